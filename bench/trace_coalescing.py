"""Where a coalesced burst's time goes: stage time stamps across the 50 requests of bar 4.

Starts Redis, the 300 ms fake upstream and 1 or 2 traced gateways (`bench.traced_gateway`),
pinned as `make bench` pins them, fires the burst of `bench.coalescing` a few times and
prints, per gateway process, when the first and last request reached each stage (ms from
the first client send).

    python -m bench.trace_coalescing [--gateways 2] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections import defaultdict
from typing import Any

import aiohttp

from bench.coalescing import Client, request
from bench.procs import Fleet, cores, free_port
from bench.workload import chat_body


async def _burst(gateways: list[str], upstream: str, clients: int) -> dict[str, Any]:
    """The burst of `bench.coalescing` (raw connections, prepared bytes), with time stamps."""
    body = chat_body(f"Coalescing probe {uuid.uuid4().hex}: is the parcel insured?")
    urls = [gateways[i % len(gateways)] for i in range(clients)]
    conns = [await Client.open(url) for url in urls]

    async def warm(i: int) -> None:
        conns[i].writer.write(request(urls[i], chat_body(f"Warm-up {i} {uuid.uuid4().hex}")))
        await conns[i].response()

    await asyncio.gather(*(warm(i) for i in range(clients)))
    async with aiohttp.ClientSession() as session:
        for g in gateways:
            async with session.get(g + "/__trace") as r:
                await r.read()
        async with session.post(upstream + "/reset"):
            pass

        async def one(i: int, start: float) -> tuple[float, float, str]:
            _, headers, _ = await conns[i].response()
            return start, time.monotonic(), headers.get("x-cache", "-")

        raws = [request(url, body) for url in urls]
        waiting = []
        for i, raw in enumerate(raws):
            start = time.monotonic()
            conns[i].writer.write(raw)
            waiting.append(one(i, start))
        results = await asyncio.gather(*waiting)
        traces = []
        for g in gateways:
            async with session.get(g + "/__trace") as r:
                traces.append(await r.json(content_type=None))
        async with session.get(upstream + "/calls") as r:
            calls = (await r.json())["total"]
    for conn in conns:
        conn.close()
    return {"clients": results, "traces": traces, "calls": calls}


def _summary(run: dict[str, Any]) -> None:
    clients = run["clients"]
    t0 = min(s for s, _, _ in clients)

    def ms(t: float) -> str:
        return f"{(t - t0) * 1000:7.1f}"

    starts = sorted(s for s, _, _ in clients)
    ends = sorted(e for _, e, _ in clients)
    print(f"  calls={run['calls']}  client sends {ms(starts[0])}..{ms(starts[-1])}")
    mid = ends[len(ends) // 2]
    print(f"  client done  first {ms(ends[0])} median {ms(mid)} last {ms(ends[-1])}")
    for trace in run["traces"]:
        by_name: dict[str, list[float]] = defaultdict(list)
        for t, _rid, name in trace["events"]:
            by_name[name].append(t)
        print(f"  gateway pid {trace['pid']}:")
        for name, ts in sorted(by_name.items(), key=lambda kv: min(kv[1])):
            ts.sort()
            print(f"    {name:22s} n={len(ts):3d} first {ms(ts[0])} last {ms(ts[-1])}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gateways", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--module", default="bench.traced_gateway")
    args = parser.parse_args()
    import os

    server_core, load_core = cores()
    if load_core is not None:
        os.sched_setaffinity(0, {int(load_core)})
    fleet = Fleet()
    try:
        _redis, redis_url = fleet.redis(load_core)
        port = free_port()
        upstream = fleet.start(
            "up",
            fleet.python("bench.fake_upstream", "--port", str(port), "--latency-ms", "300"),
            port=port,
            core=load_core,
        )
        env = {
            "CACHE_BACKEND": "redis",
            "REDIS_URL": redis_url,
            "CACHE_NAMESPACE": f"trace{int(time.time())}",
            "PROVIDER": "openai",
            "OPENAI_API_KEY": "sk-bench",
            "UPSTREAM_HTTP_CLIENT": "aiohttp",
            "OPENAI_BASE_URL": upstream.url + "/v1",
            "GATEWAY_API_KEYS": "bench-key",
            "LOG_LEVEL": "WARNING",
        }
        gateways = []
        for i in range(args.gateways):
            p = free_port()
            gateways.append(
                fleet.start(
                    f"gw{i}",
                    fleet.python(args.module, "--port", str(p)),
                    port=p,
                    core=server_core,
                    env=env,
                )
            )
        maxes = []
        for r in range(args.repeat):
            run = asyncio.run(_burst([g.url for g in gateways], upstream.url, args.clients))
            t0 = min(s for s, _, _ in run["clients"])
            maxes.append(max((e - t0) * 1000 for _, e, _ in run["clients"]))
            print(f"== burst {r}: slowest {maxes[-1]:.1f} ms")
            _summary(run)
        maxes.sort()
        rounded = [round(m, 1) for m in maxes]
        print(f"slowest per burst: {rounded} median {maxes[len(maxes) // 2]:.1f}")
    finally:
        fleet.close()


if __name__ == "__main__":
    main()
