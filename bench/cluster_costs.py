"""The figures docs/cluster.md quotes, measured on real servers (not part of `make bench`).

    python -m bench.cluster_costs

1. Bytes per key kind (`MEMORY USAGE ... SAMPLES 0`): a chat entry, a 1,536-dim embedding
   entry, a lease, a waiter flag and the savings counters, written by the gateway itself.
2. PUBLISH against SPUBLISH on a 3-primary cluster: the publisher's time per message and the
   messages the cluster bus carries per message (a classic PUBLISH goes to every node).
3. The savings flush as one script in one tagged slot: time per flush.
4. An embedding batch of 64 cold inputs (claim, fetch, store and release) and of 64 hits, on
   one server and on the cluster: what grouping the claims per slot costs.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import time
from typing import Any

import httpx
import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from bench.procs import Fleet, free_port
from bench.redis_cluster import start_cluster
from bench.workload import AUTH, CHAT_PATH, EMBED_PATH, chat_body

NAMESPACE = "costs"


def _app(env: dict[str, str]) -> Any:
    os.environ.update(env)
    from genai_api.app import create_app
    from genai_api.settings import Settings

    return create_app(Settings(_env_file=None))  # type: ignore[call-arg]


async def _gateway_keys(env: dict[str, str], upstream: str) -> dict[str, Any]:
    """Write one entry of each kind through the gateway, and a lease and a waiter flag."""
    app = _app({**env, "OPENAI_BASE_URL": upstream + "/v1"})
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            chat = await http.post(CHAT_PATH, content=chat_body("Where is my order?"), headers=AUTH)
            body = {"model": "text-embedding-3-small", "input": ["a sturdy blue kettle, 1.7 l"]}
            embedding = await http.post(EMBED_PATH, json=body, headers=AUTH)
        gateway = app.state.gateway
        await gateway.accounting.flush()
        client = gateway.store.client
        leases = gateway.pipeline.leases
        keys = []
        for answer in (chat, embedding):
            match = f"{NAMESPACE}:e:*{answer.headers['x-cache-key']}*"
            keys += await _scan(client, match)
        lock, flag = leases.lock_key(keys[0]), leases.wait_key(keys[0])
        # As the claim script writes it: no TTL, its deadline (ms) in the value.
        await client.set(lock, f"{leases._token()}|{int(time.time() * 1000) + 5000}")
        await client.set(flag, "1", px=30_000)
        stats = await _scan(client, f"{NAMESPACE}:*stats*")
        sizes = {
            "chat entry": await client.memory_usage(keys[0], samples=0),
            "embedding entry (1,536 dims)": await client.memory_usage(keys[1], samples=0),
            "chat entry: its value (STRLEN)": await client.strlen(keys[0]),
            "embedding entry: its value (STRLEN)": await client.strlen(keys[1]),
            "lease": await client.memory_usage(lock, samples=0),
            "waiter flag": await client.memory_usage(flag, samples=0),
        }
        for key in stats:
            kind = key.split("stats", 1)[1].lstrip("}:").split(":")[0]
            sizes[f"stats {kind}"] = await client.memory_usage(key, samples=0)
        sizes["key examples"] = [keys[0], lock]
        return sizes


async def _scan(client: Any, match: str) -> list[str]:
    if isinstance(client, RedisCluster):
        found = []
        for node in client.get_primaries():
            cursor: int | None = None
            while cursor != 0:
                cursors, keys = await client.scan(cursor or 0, match=match, target_nodes=node)
                cursor = int(cursors[node.name])
                found += [k.decode() for k in keys]
        return found
    return [k.decode() async for k in client.scan_iter(match=match)]


def _bus_messages(ports: list[int]) -> int:
    """Pub/sub messages the nodes sent each other over the cluster bus, so far."""
    total = 0
    for port in ports:
        info = subprocess.run(
            ["redis-cli", "-p", str(port), "CLUSTER", "INFO"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        for line in info.splitlines():
            if line.startswith(
                ("cluster_stats_messages_publish_sent", "cluster_stats_messages_publishshard_sent")
            ):
                total += int(line.split(":")[1])
    return total


async def _publish(cluster_url: str, ports: list[int], n: int = 2000) -> dict[str, float]:
    """Per message: the publisher's wait, and the messages the cluster bus carried for it."""
    client = RedisCluster.from_url(cluster_url)
    await client.initialize()
    out: dict[str, float] = {}
    for command in ("PUBLISH", "SPUBLISH"):
        bus = _bus_messages(ports)
        started = time.perf_counter()
        for i in range(n):
            await client.execute_command(command, f"{NAMESPACE}:{{l1}}", f"key-{i}")
        out[f"{command} publisher µs/msg"] = (time.perf_counter() - started) / n * 1e6
        out[f"{command} bus messages/msg"] = (_bus_messages(ports) - bus) / n
    await client.aclose()
    return out


async def _flush(client: Any) -> float:
    try:
        return await _flushes(client)
    finally:
        await client.aclose()


async def _flushes(client: Any) -> float:
    from genai_api.savings.backends import Batch
    from genai_api.savings.redis import RedisStats

    stats = RedisStats(client, NAMESPACE + "f")
    times = []
    for seq in range(1, 201):
        batch = Batch(seq=seq)
        now = time.time()
        for model in range(8):
            batch.add(f"model-{model}", {"hits": 3, "misses": 1, "saved_pusd": 1234}, now)
        started = time.perf_counter()
        await stats.apply(batch, now)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


async def _batches(env: dict[str, str], upstream: str) -> dict[str, float]:
    app = _app({**env, "OPENAI_BASE_URL": upstream + "/v1"})
    out = {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            for label, fresh in (("cold", True), ("hit", False)):
                times = []
                for round_no in range(20):
                    tag = f"{round_no}-{os.getpid()}" if fresh else "same"
                    body = orjson.dumps(
                        {
                            "model": "text-embedding-3-small",
                            "input": [f"item {tag} {i}" for i in range(64)],
                            "encoding_format": "base64",
                        }
                    )
                    started = time.perf_counter()
                    answer = await http.post(EMBED_PATH, content=body, headers=AUTH)
                    times.append(time.perf_counter() - started)
                    assert answer.status_code == 200, answer.text
                out[f"64 inputs {label} ms"] = statistics.median(times[2:]) * 1e3
    return out


def main() -> None:
    fleet = Fleet()
    try:
        _, standalone = fleet.redis(None)
        cluster = start_cluster(fleet, None)
        port = free_port()
        upstream = fleet.start(
            "upstream", fleet.python("bench.fake_upstream", "--port", str(port)), port=port,
            core=None,
        )  # fmt: skip
        base = {
            "CACHE_BACKEND": "redis",
            "CACHE_NAMESPACE": NAMESPACE,
            "PROVIDER": "openai",
            "OPENAI_API_KEY": "x",
            "GATEWAY_API_KEYS": "bench-key",
            "LOG_LEVEL": "WARNING",
        }
        envs = {
            "one server": {**base, "REDIS_MODE": "standalone", "REDIS_URL": standalone},
            "cluster": {**base, "REDIS_MODE": "cluster", "REDIS_URL": cluster.url},
        }
        for name, env in envs.items():
            print(f"== {name}: bytes per key (MEMORY USAGE)")
            for kind, size in asyncio.run(_gateway_keys(env, upstream.url)).items():
                print(f"  {kind}: {size}")
        print("== pub/sub on the cluster")
        for what, value in asyncio.run(_publish(cluster.url, list(cluster.nodes))).items():
            print(f"  {what}: {value:.1f}")
        print("== savings flush (8 models, one script)")
        print(f"  one server: {asyncio.run(_flush(aioredis.Redis.from_url(standalone))):.3f} ms")
        print(f"  cluster: {asyncio.run(_flush(RedisCluster.from_url(cluster.url))):.3f} ms")
        for name, env in envs.items():
            print(f"== embedding batches, {name}")
            for what, value in asyncio.run(_batches(env, upstream.url)).items():
                print(f"  {what}: {value:.2f}")
    finally:
        fleet.close()


if __name__ == "__main__":
    main()
