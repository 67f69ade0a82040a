"""CONTRACT §6 faults on a live Redis Cluster and a live Sentinel set-up, started by the tests.

- first, on a live `serve --workers 2`: 50 identical cold misses across its two processes make
  one provider call (coalescing across processes on this topology);
- a primary killed under load: zero 5xx, zero dropped connections, BYPASS for its keys while
  it is down, `/readyz` says which shard is down, hits resume once a replica is promoted;
- a primary hung with `DEBUG SLEEP`: only the requests whose keys it holds wait (at most one
  REDIS_TIMEOUT each, until its breaker opens); the healthy nodes keep their connections;
- a lease holder whose shard fails over leaves no waiter blocked past the lease bound;
- a Sentinel primary killed under load: the gateway finds the promoted replica by itself.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from tests.conftest import CHAT, chat_response, make_settings, running, wait_until
from tests.embeddings_provider import Provider, assert_vectors, embed
from tests.processes import Service, fake_upstream, gateway, provider_calls
from tests.redis_server import free_port
from tests.redis_topologies import RedisClusterServers, SentinelSet

pytestmark = [pytest.mark.redis, pytest.mark.slow]

PATH = "/v1/chat/completions"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RedisClusterServers]:
    """A cluster of this test's own, to kill or hang nodes of."""
    servers = RedisClusterServers(tmp_path / "cluster")
    (tmp_path / "cluster").mkdir()
    try:
        yield servers.start()
    finally:
        servers.stop()


@pytest.fixture
def slow_upstream(tmp_path: Path) -> Iterator[Service]:
    """The fake upstream, answering in 200 ms: identical misses overlap."""
    service = fake_upstream(tmp_path, latency_ms=200)
    try:
        yield service
    finally:
        service.stop()


def live_gateway(tmp_path: Path, upstream: Service, **env: str) -> Service:
    """`genai-api serve --workers 2`: two processes sharing the topology."""
    values = {
        "CACHE_BACKEND": "redis",
        "PROVIDER": "openai",
        "OPENAI_API_KEY": "x",
        "OPENAI_BASE_URL": upstream.url + "/v1",
        "UPSTREAM_HTTP_CLIENT": "aiohttp",
        "REDIS_BREAKER_SECONDS": "0.5",
        "LOG_LEVEL": "WARNING",
        **env,
    }
    service = gateway(tmp_path, values, workers=2)
    service.wait_ready("/readyz", timeout=60)
    return service


async def one_call_for_fifty(
    client: httpx.AsyncClient, service: Service, upstream: Service
) -> None:
    """50 identical cold misses at once, spread by the kernel over both workers."""
    before = provider_calls(upstream)
    body = {**CHAT, "seed": 424242}
    answers = await asyncio.gather(*(client.post(service.url + PATH, json=body) for _ in range(50)))
    assert {a.status_code for a in answers} == {200}
    assert provider_calls(upstream) - before == 1
    statuses = Counter(a.headers["x-cache"] for a in answers)
    assert statuses["MISS"] == 1 and statuses["COALESCED"] + statuses["HIT"] == 49


def short_lived_client() -> httpx.AsyncClient:
    """A client that reuses a connection only if it was idle under 1 s. Between its requests
    these tests ask the topology, sleep and wait for failovers, on a loaded machine ~5 s: the
    gateway's own keep-alive bound, when it closes an idle connection even as a request
    arrives on it ("Server disconnected without sending a response")."""
    return httpx.AsyncClient(timeout=10, limits=httpx.Limits(keepalive_expiry=1.0))


def bodies(n: int) -> list[dict[str, Any]]:
    return [{**CHAT, "seed": i} for i in range(n)]


async def store_all(
    client: httpx.AsyncClient, service: Service, requests: list[dict[str, Any]]
) -> list[str]:
    """Each request once, all at once (distinct keys: one upstream call each, overlapping
    instead of 200 ms after one another): every one a MISS stored; their cache keys."""
    answers = await asyncio.gather(*(client.post(service.url + PATH, json=b) for b in requests))
    assert [a.headers["x-cache"] for a in answers] == ["MISS"] * len(requests)
    return [a.headers["x-cache-key"] for a in answers]


class Load:
    """`workers` clients asking `bodies` over and over, on kept-alive connections, until
    `stop()`: every answer and every transport error is kept, with its time."""

    def __init__(self, url: str, bodies: list[dict[str, Any]], workers: int) -> None:
        self.url, self.bodies, self.workers = url, bodies, workers
        self.answers: list[tuple[float, int, str, str]] = []  # (t, status, x-cache, key)
        self.errors: list[str] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(i)) for i in range(self.workers)]

    async def _run(self, worker: int) -> None:
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(timeout=10, limits=limits) as client:
            i = worker
            while not self._stop.is_set():
                body = self.bodies[i % len(self.bodies)]
                i += 1
                try:
                    answer = await client.post(self.url + PATH, json=body)
                except httpx.HTTPError as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                headers = answer.headers
                self.answers.append(
                    (
                        time.monotonic(),
                        answer.status_code,
                        headers.get("x-cache", ""),
                        headers.get("x-cache-key", ""),
                    )
                )

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


async def test_a_killed_primary_fails_no_request_and_hits_resume_after_promotion(
    tmp_path: Path, cluster: RedisClusterServers, slow_upstream: Service
) -> None:
    service = live_gateway(
        tmp_path, slow_upstream, REDIS_MODE="cluster", REDIS_URL=cluster.url, CACHE_L1_MAX_BYTES="0"
    )
    try:
        async with short_lived_client() as client:
            await one_call_for_fifty(client, service, slow_upstream)
            keys = await store_all(client, service, bodies(24))  # every primary holds some
            await asyncio.to_thread(cluster.sync)
            dead = cluster.primary_of("{" + keys[0] + "}")
            on_dead = {k for k in keys if cluster.primary_of("{" + k + "}") == dead}
            load = Load(service.url, bodies(24), workers=16)
            load.start()
            await asyncio.sleep(0.5)
            cluster.kill(dead)
            killed = time.monotonic()
            await asyncio.sleep(0.8)
            during = (await client.get(service.url + "/readyz")).json()
            await asyncio.to_thread(cluster.wait_promoted, dead)
            promoted = time.monotonic()
            await asyncio.sleep(2.0)
            await load.stop()
            after = (await client.get(service.url + "/readyz")).json()
    finally:
        service.stop()
    assert load.errors == []  # no dropped connection, no timeout
    assert Counter(status for _, status, _, _ in load.answers) == {200: len(load.answers)}
    while_down = Counter(
        c for t, _, c, k in load.answers if killed + 0.2 < t < promoted and k in on_dead
    )
    assert while_down["BYPASS"]  # served by the provider (joined flights: COALESCED)
    healthy = Counter(c for t, _, c, k in load.answers if t > killed and k not in on_dead)
    assert set(healthy) == {"HIT"}, healthy  # the other shards never noticed
    resumed = [c for t, _, c, k in load.answers if t > promoted + 1.5 and k in on_dead]
    assert resumed and set(resumed) == {"HIT"}  # the replica had them; found by itself
    assert during["status"] in ("degraded", "ready")  # 200: the others serve
    if during["status"] == "degraded":
        assert during["shards_down"] == [f"127.0.0.1:{dead}"]
        assert during["reasons"] == ["shard_down"]
    assert after["status"] == "ready" and "shards_down" not in after and "reasons" not in after
    assert after["coalescing"] == "fleet"  # the wake-ups' subscription is back (any node)
    print(f"while down: {dict(while_down)}; {len(load.answers)} answers")


async def test_a_hung_primary_stalls_only_the_requests_for_its_keys(
    tmp_path: Path, upstream: respx.MockRouter
) -> None:
    # A node timeout longer than the hang: the cluster must not fail the node over meanwhile.
    cluster = RedisClusterServers(tmp_path / "slow", node_timeout_ms=6000)
    (tmp_path / "slow").mkdir()
    cluster.start()
    try:
        await _hung_primary(cluster, upstream)
    finally:
        cluster.stop()


async def _hung_primary(cluster: RedisClusterServers, upstream: respx.MockRouter) -> None:
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    provider = Provider()
    upstream.post("/embeddings").mock(side_effect=provider)
    inputs = [f"input {i}" for i in range(30)]
    settings = make_settings(
        cache_backend="redis",
        redis_mode="cluster",
        redis_url=cluster.url,
        # Not the 0.2 s default: a healthy node's answer must never time out, and on a loaded
        # 2-core machine this process alone can pause ~0.3 s (a GC pass, the other core busy).
        redis_timeout=0.4,
        cache_l1_max_bytes=0,
    )
    async with running(settings) as gw:
        keys = [(await gw.http.post(PATH, json=b)).headers["x-cache-key"] for b in bodies(30)]
        await embed(gw, inputs)
        by_input = {i: (await embed(gw, [i])).headers["x-cache-key"] for i in inputs}
        where = {k: cluster.primary_of("{" + k + "}") for k in keys}
        sick = where[keys[0]]
        healthy_ports = [p for p in cluster.primaries() if p != sick]
        received = {p: cluster.connections_received(p) for p in healthy_ports}
        hang = cluster.hang(sick, 3.5)  # past the 3 timeouts that open the breaker and the rounds
        await asyncio.sleep(0.3)  # the node is asleep now

        async def timed(body: dict[str, Any]) -> tuple[float, str, str]:
            started = time.monotonic()
            answer = await gw.http.post(PATH, json=body)
            assert answer.status_code == 200
            return (
                time.monotonic() - started,
                answer.headers["x-cache"],
                answer.headers["x-cache-key"],
            )

        sick_keys = [b for b, k in zip(bodies(30), keys, strict=True) if where[k] == sick]
        rounds = [await timed(body) for body in sick_keys[:4]]  # enough to open any breaker
        for _ in range(2):  # then everything at once: healthy keys must not notice
            rounds += await asyncio.gather(*(timed(b) for b in bodies(30)))
        started = time.monotonic()
        batch = await embed(gw, inputs)  # one MGET per node: the sick node's inputs BYPASS
        batch_took = time.monotonic() - started
        sent = provider.calls[-1] if len(provider.calls) > 1 else []
        await asyncio.to_thread(hang.wait, 10)
        after = {p: cluster.connections_received(p) for p in healthy_ports}
        deadline = time.monotonic() + 5.0  # the breaker's probe finds the node awake
        while True:
            again = await asyncio.gather(*(timed(b) for b in bodies(30)))
            if {c for _, c, _ in again} == {"HIT"} or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    sick_rows = [r for r in rounds if where[r[2]] == sick]
    healthy_rows = [r for r in rounds if where[r[2]] != sick]
    assert healthy_rows and {c for _, c, _ in healthy_rows} == {"HIT"}
    assert max(t for t, _, _ in healthy_rows) < 1.0  # never waited on the sick node (0.4 s each)
    assert sick_rows and {c for _, c, _ in sick_rows} == {"BYPASS"}
    assert max(t for t, _, _ in sick_rows) < 0.4 + 1.0  # one REDIS_TIMEOUT at most, plus slack
    # No connection of a healthy node was closed and reopened: the only new one is the
    # redis-cli asking INFO the second time.
    assert after == {port: n + 1 for port, n in received.items()}
    assert {c for _, c, _ in again} == {"HIT"}  # the node answers again: hits resume
    on_sick = [i for i in inputs if cluster.primary_of("{" + by_input[i] + "}") == sick]
    assert on_sick and sorted(sent) == sorted(on_sick)  # only those went upstream again
    assert batch.headers["x-cache"] == "BYPASS"
    assert batch.headers["x-cache-hits"] == str(len(inputs) - len(on_sick))
    assert batch_took < 1.0
    assert_vectors(batch, inputs)


async def test_a_waiter_is_not_blocked_past_the_lease_when_the_holders_shard_fails_over(
    cluster: RedisClusterServers, upstream: respx.MockRouter
) -> None:
    called, release = asyncio.Event(), asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        if not called.is_set():  # the holder's call hangs on; anyone else's answers
            called.set()
            await release.wait()
        return httpx.Response(200, json=chat_response())

    upstream.post("/chat/completions").mock(side_effect=slow)
    settings = make_settings(
        cache_backend="redis", redis_mode="cluster", redis_url=cluster.url, lease_seconds=2.0
    )
    async with running(settings) as holder, running(settings) as other:
        await wait_until(lambda: other.gateway.pipeline.leases.state == "fleet")
        first = asyncio.create_task(holder.http.post(PATH, json=CHAT))
        await asyncio.wait_for(called.wait(), 5)
        key = _skey_digest(holder)
        waiter = asyncio.create_task(other.http.post(PATH, json=CHAT))
        await asyncio.sleep(0.3)  # waiting on the holder's lease
        cluster.kill(cluster.primary_of("{" + key + "}"))
        killed = time.monotonic()
        answer = await asyncio.wait_for(waiter, 2.0 + 3.0)
        took = time.monotonic() - killed
        release.set()
        held = await first
    assert answer.status_code == 200 and held.status_code == 200
    assert took < 2.0 + 1.0  # within the lease bound, with slack for a loaded machine
    print(f"waiter answered {took:.2f} s after the shard died: {answer.headers['x-cache']}")


def _skey_digest(gw: Any) -> str:
    """The digest of the only lease `gw` holds."""
    (lock,) = gw.gateway.pipeline.leases.held
    return str(lock).rsplit("{", 1)[1].rstrip("}")


async def test_a_killed_sentinel_primary_fails_no_request_and_hits_resume(
    tmp_path: Path, slow_upstream: Service
) -> None:
    sentinels = SentinelSet(tmp_path / "sentinel")
    (tmp_path / "sentinel").mkdir()
    sentinels.start()
    service = None
    try:
        service = live_gateway(
            tmp_path,
            slow_upstream,
            REDIS_MODE="sentinel",
            REDIS_SENTINELS=sentinels.sentinels_setting,
            CACHE_L1_MAX_BYTES="0",
        )
        async with short_lived_client() as client:
            await one_call_for_fifty(client, service, slow_upstream)
            await store_all(client, service, bodies(8))
            load = Load(service.url, bodies(8), workers=8)
            load.start()
            await asyncio.sleep(0.5)
            old = sentinels.kill_primary()
            await asyncio.to_thread(sentinels.wait_failover, old)
            promoted = time.monotonic()
            await asyncio.sleep(2.0)
            await load.stop()
            ready = await client.get(service.url + "/readyz")
        calls = provider_calls(slow_upstream)
    finally:
        if service is not None:
            service.stop()
        sentinels.stop()
    assert load.errors == []
    assert Counter(status for _, status, _, _ in load.answers) == {200: len(load.answers)}
    resumed = [c for t, _, c, _ in load.answers if t > promoted + 1.5]
    assert resumed and set(resumed) == {"HIT"}
    assert ready.status_code == 200 and ready.json()["cache"] == "redis-sentinel"
    print(f"{len(load.answers)} answers, {calls} provider calls")


async def test_a_cluster_no_node_of_which_answers_is_bypassed_and_not_ready(
    upstream: respx.MockRouter,
) -> None:
    route = upstream.post("/chat/completions").mock(
        return_value=httpx.Response(200, json=chat_response())
    )
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    settings = make_settings(cache_backend="redis", redis_mode="cluster", redis_url=nowhere)
    async with running(settings) as gw:
        answers = [await gw.http.post(PATH, json=CHAT) for _ in range(3)]
        ready = await gw.http.get("/readyz")
    assert [a.status_code for a in answers] == [200] * 3
    assert {a.headers["x-cache"] for a in answers} == {"BYPASS"} and route.call_count == 3
    assert ready.status_code == 503
    assert ready.json()["error"]["code"] == "cache_unavailable"


async def test_a_cluster_that_comes_up_after_the_gateway_is_used_by_itself(
    tmp_path: Path, upstream: respx.MockRouter
) -> None:
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    ports = [free_port() for _ in range(6)]
    settings = make_settings(
        cache_backend="redis",
        redis_mode="cluster",
        redis_url=f"redis://127.0.0.1:{ports[0]}/0",
        redis_breaker_seconds=0.2,
    )
    cluster = RedisClusterServers(tmp_path / "late")
    try:
        async with running(settings) as gw:
            before = await gw.http.post(PATH, json=CHAT)
            await asyncio.to_thread(cluster.start, ports)
            deadline = time.monotonic() + 10
            statuses = []
            while time.monotonic() < deadline and statuses[-2:] != ["MISS", "HIT"]:
                statuses.append((await gw.http.post(PATH, json=CHAT)).headers["x-cache"])
                await asyncio.sleep(0.1)
            ready = await gw.http.get("/readyz")
    finally:
        cluster.stop()
    assert before.headers["x-cache"] == "BYPASS"
    assert statuses[-2:] == ["MISS", "HIT"]  # no restart: the probe discovered the cluster
    assert ready.json()["status"] == "ready"
