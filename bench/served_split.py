"""User and kernel CPU per chat hit, served: the limit app against the gateway (issue #17).

`make bench` reports one CPU figure per request (utime + stime). Split, it says where the
gap is: the gateway answers an L1 hit with one `write` and no Redis round trip, so it spends
less in the kernel than the limit, and the difference is all Python (user time). The two
servers are measured in alternating rounds under the same `wrk` load (32 connections),
each on whatever core is free (noisy on a shared machine: read the medians).

    python -m bench.served_split                 # 3 rounds of 4 s each
    python -m bench.served_split --rounds 5 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
from pathlib import Path

from bench import workload, wrk
from bench.procs import Fleet, Process, free_port
from bench.run import _default

CLK_TCK = os.sysconf("SC_CLK_TCK")


def user_sys(process: Process) -> tuple[float, float]:
    """utime and stime of the process so far, in seconds."""
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    fleet = Fleet()
    try:
        _, redis_url = fleet.redis(None)
        py = fleet.python
        up, lim, gw = free_port(), free_port(), free_port()
        upstream = fleet.start(
            "upstream", py("bench.fake_upstream", "--port", str(up)), port=up, core=None
        )
        limit = fleet.start(
            "limit",
            py("bench.limit_app", "--port", str(lim), "--redis", redis_url),
            port=lim,
            core=None,
        )
        env = {
            "CACHE_BACKEND": "redis",
            "REDIS_URL": redis_url,
            "CACHE_NAMESPACE": "split",
            "PROVIDER": "openai",
            "OPENAI_API_KEY": "sk-bench",
            "UPSTREAM_HTTP_CLIENT": "aiohttp",
            "OPENAI_BASE_URL": upstream.url + "/v1",
            "GATEWAY_API_KEYS": "bench-key",
            "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL") or _default("log_level"),
            "LOG_FORMAT": os.environ.get("BENCH_LOG_FORMAT") or _default("log_format"),
        }
        gateway = fleet.start(
            "gateway", py("bench.gateway_server", "--port", str(gw)), port=gw, core=None, env=env
        )
        bodies = workload.chat_hits()
        asyncio.run(workload.warm_gateway(gateway.url, workload.CHAT_PATH, bodies))
        asyncio.run(workload.fill_limit_chat(redis_url, upstream.url, bodies))
        load = wrk.Load(bodies)
        figures: dict[str, list[tuple[float, float, float]]] = {"limit": [], "gateway": []}
        for k in range(args.rounds):
            order = [("limit", limit), ("gateway", gateway)]
            for name, server in order if k % 2 == 0 else order[::-1]:
                before = user_sys(server)
                sample = wrk.run(
                    name,
                    server,
                    server.url + workload.CHAT_PATH,
                    load,
                    connections=32,
                    seconds=args.seconds,
                    core=None,
                    workdir=fleet.workdir,
                )
                after = user_sys(server)
                per = 1e6 / sample.requests
                user, kernel = (after[0] - before[0]) * per, (after[1] - before[1]) * per
                figures[name].append((sample.rps, user, kernel))
        print(f"{'target':<8} {'req/s':>8} {'user µs/hit':>12} {'sys µs/hit':>11} {'total':>7}")
        for name, rows in figures.items():
            rps, user, kernel = (statistics.median(r[i] for r in rows) for i in range(3))
            print(f"{name:<8} {rps:>8,.0f} {user:>12.1f} {kernel:>11.1f} {user + kernel:>7.1f}")
    finally:
        fleet.close()


if __name__ == "__main__":
    main()
