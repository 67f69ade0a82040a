"""The Redis Cluster scenarios of issue #16, on a 3-primary + 3-replica loopback cluster.

- `cluster-hits`: chat hits and 64 x 1536 embedding hits (base64), the gateway against the
  limit app doing the same with redis-py's `RedisCluster` (one GET; `mget_nonatomic`, one MGET
  per slot pipelined per node). Bars: chat >= 0.75 x, embeddings >= 0.6 x. The gateway runs as
  deployed (its L1 on); a second gateway with the L1 off shows what the Redis path costs.
- `cluster-coalescing`: 50 identical cold misses spread over two gateway processes on the
  cluster, against the 300 ms upstream: exactly one provider call.
- `cluster-failover`: 32 connections of hits while one primary is SIGKILLed at t = 5 s:
  non-2xx answers (must be 0), socket errors, the p99 during the failover window, and the
  seconds until throughput is back to 90 % of its level before the kill. Runs last: it
  leaves the cluster with a replica promoted.

The cluster and its servers start when the first of these scenarios runs.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bench import side, workload, wrk
from bench.coalescing import burst
from bench.procs import Process, free_port
from bench.redis_cluster import Cluster, start_cluster
from bench.scenarios import Bar, Env

NAMES = ("cluster-hits", "cluster-coalescing", "cluster-failover")
KILL_AT = 5.0  # seconds into the failover run
FAILOVER_SECONDS = 20.0


@dataclass
class ClusterEnv:
    cluster: Cluster
    limit: Process
    gateway: Process
    gateway_no_l1: Process
    gateway_env: dict[str, str]
    started: list[Process] = field(default_factory=list)


def setup(env: Env) -> ClusterEnv:
    fleet = env.fleet
    cluster = start_cluster(fleet, env.load_core)
    limit_port, gw_port, raw_port = free_port(), free_port(), free_port()
    limit = fleet.start(
        "cluster-limit",
        fleet.python(
            "bench.limit_app", "--port", str(limit_port), "--redis", cluster.url, "--cluster"
        ),
        port=limit_port,
        core=env.server_core,
    )
    gateway_env = {
        **env.gateway_env,
        "REDIS_MODE": "cluster",
        "REDIS_URL": cluster.url,
        "CACHE_NAMESPACE": env.namespace + "c",
    }
    gateway = fleet.start(
        "cluster-gateway",
        fleet.python("bench.gateway_server", "--port", str(gw_port)),
        port=gw_port,
        core=env.server_core,
        env=gateway_env,
    )
    no_l1 = fleet.start(
        "cluster-gateway-no-l1",
        fleet.python("bench.gateway_server", "--port", str(raw_port)),
        port=raw_port,
        core=env.server_core,
        env={**gateway_env, "CACHE_L1_MAX_BYTES": "0"},
    )
    return ClusterEnv(cluster, limit, gateway, no_l1, gateway_env)


def hits(env: Env, cenv: ClusterEnv) -> tuple[list[side.Comparison], list[Bar]]:
    chat = workload.chat_hits()
    for gateway in (cenv.gateway, cenv.gateway_no_l1):
        asyncio.run(workload.warm_gateway(gateway.url, workload.CHAT_PATH, chat))
    asyncio.run(workload.fill_limit_chat(cenv.cluster.url, env.upstream.url, chat, cluster=True))
    load = wrk.Load(chat)
    path = workload.CHAT_PATH
    chat_cmp = env.compare(
        "6 cluster: 1 chat, all hits",
        [
            side.Target("limit", cenv.limit, cenv.limit.url + path, load),
            side.Target("gateway", cenv.gateway, cenv.gateway.url + path, load),
            side.Target("gateway, L1 off", cenv.gateway_no_l1, cenv.gateway_no_l1.url + path, load),
        ],
        connections=32,
    )
    embed = [workload.embedding_body(batch, "base64") for batch in range(4)]
    asyncio.run(workload.warm_gateway(cenv.gateway.url, workload.EMBED_PATH, embed))
    asyncio.run(
        workload.fill_limit_embeddings(cenv.cluster.url, env.upstream.url, embed, cluster=True)
    )
    embed_load = wrk.Load(embed)
    epath = workload.EMBED_PATH
    embed_cmp = env.compare(
        "6 cluster: embeddings 64x1536 base64",
        [
            side.Target("limit", cenv.limit, cenv.limit.url + epath, embed_load),
            side.Target("gateway", cenv.gateway, cenv.gateway.url + epath, embed_load),
        ],
        connections=32,
    )
    chat_errors = chat_cmp.errors("gateway") + chat_cmp.errors("limit")
    embed_errors = embed_cmp.errors("gateway")
    return [chat_cmp, embed_cmp], [
        Bar(
            "6 cluster chat hits",
            "throughput / cluster limit",
            chat_cmp.ratio("gateway"),
            ">= 0.75",
            chat_cmp.ratio("gateway") >= 0.75 and chat_errors == 0,
            f"L1 off: {chat_cmp.ratio('gateway, L1 off'):.2f}; {chat_errors} errors",
        ),
        Bar(
            "6 cluster embeddings",
            "base64 throughput / cluster limit",
            embed_cmp.ratio("gateway"),
            ">= 0.60",
            embed_cmp.ratio("gateway") >= 0.6 and embed_errors == 0,
            f"{embed_errors} errors",
        ),
    ]


def coalescing(env: Env, cenv: ClusterEnv) -> tuple[dict[str, Any], list[Bar]]:
    slow_env = {**cenv.gateway_env, "OPENAI_BASE_URL": env.slow_upstream.url + "/v1"}
    gateways = []
    for i in range(2):
        port = free_port()
        gateways.append(
            env.fleet.start(
                f"cluster-gateway-slow-{i}",
                env.fleet.python("bench.gateway_server", "--port", str(port)),
                port=port,
                core=env.server_core,
                env=slow_env,
            )
        )
    try:
        result = asyncio.run(
            burst(
                [g.url for g in gateways],
                env.slow_upstream.url,
                cenv.cluster.url,
                cenv.gateway_env["CACHE_NAMESPACE"],
            )
        )
    finally:
        for gateway in gateways:
            env.fleet.stop(gateway)
    ok = result.upstream_calls == 1 and result.statuses == {"200": result.clients}
    note = f"{result.statuses}, {result.cache}, slowest {result.max_ms:.0f} ms"
    return result.as_dict(), [
        Bar(
            "7 cluster coalescing (2 processes)",
            "provider calls",
            result.upstream_calls,
            "== 1",
            ok,
            note,
        ),
    ]


def failover(env: Env, cenv: ClusterEnv) -> tuple[dict[str, Any], list[Bar]]:
    """Hits in 1-second wrk runs back to back; one primary SIGKILLed at `KILL_AT`."""
    chat = workload.chat_hits()
    asyncio.run(workload.warm_gateway(cenv.gateway.url, workload.CHAT_PATH, chat))
    cenv.cluster.sync()
    load = wrk.Load(chat)
    url = cenv.gateway.url + workload.CHAT_PATH
    samples: list[tuple[float, wrk.Sample]] = []
    victim = cenv.cluster.primaries()[0]  # asked before the clock starts (redis-cli is slow)
    started = time.monotonic()

    def run() -> None:
        while time.monotonic() - started < FAILOVER_SECONDS:
            at = time.monotonic() - started
            sample = wrk.run(
                "gateway", cenv.gateway, url, load, connections=32, seconds=1,
                core=env.load_core, workdir=env.workdir,
            )  # fmt: skip
            samples.append((at, sample))

    runner = threading.Thread(target=run)
    runner.start()
    time.sleep(KILL_AT)
    os.kill(cenv.cluster.nodes[victim].pid, signal.SIGKILL)  # a crash: no goodbye
    killed = time.monotonic() - started
    runner.join()
    before = [s.rps for at, s in samples if 1.0 <= at and at + 1.0 <= killed]
    baseline = statistics.median(before) if before else 0.0
    after = [(at, s) for at, s in samples if at + 1.0 > killed]
    # The dip starts with the first chunk below 90 % and ends with the first one after it back
    # at 90 % or more (a later slow chunk is the shared machine, not the failover).
    dip = next((i for i, (_, s) in enumerate(after) if s.rps < 0.9 * baseline), None)
    back = None
    if dip is not None:
        back = next((at for at, s in after[dip:] if s.rps >= 0.9 * baseline), None)
    recovered = 0.0 if dip is None else (FAILOVER_SECONDS if back is None else back - killed)
    low = dip is not None
    window = [s for at, s in after if at <= killed + max(recovered, 1.0)]
    non_2xx = sum(s.errors for _, s in samples)
    p99 = max((s.p99_ms for s in window), default=0.0)
    data = {
        "killed_at_s": killed,
        "victim_port": victim,
        "baseline_rps": baseline,
        "recovered_after_s": recovered,
        "window_p99_ms": p99,
        "errors": non_2xx,
        "timeline": [{"at_s": at, **s.as_dict()} for at, s in samples],
    }
    recovered_note = "never dipped below 90 %" if not low else f"back at {recovered:.1f} s"
    if low and back is None:
        recovered_note = "not back within the run"
    before_p99 = statistics.median(s.p99_ms for at, s in samples if at < killed)
    requests = sum(s.requests for _, s in samples)
    return data, [
        Bar(
            "8 cluster failover",
            "non-2xx and socket errors",
            non_2xx,
            "== 0",
            non_2xx == 0,
            f"{requests:,} requests, baseline {baseline:,.0f}/s",
        ),
        Bar(
            "8 cluster failover",
            "p99 ms in the failover window",
            p99,
            "shown",
            None,
            f"before the kill: {before_p99:.1f} ms",
        ),
        Bar(
            "8 cluster failover",
            "seconds until throughput >= 90 %",
            recovered,
            "shown",
            None,
            recovered_note,
        ),
    ]
