"""The gateway's CPU for a burst of identical cold misses (bar 4), in-process.

Same set-up as `bench.profile_hit` (the real app, real Redis, the fake upstream in its own
process). Each burst is 50 concurrent requests with one new body, driven straight through
the ASGI app, so the figure is the gateway's own work for a coalesced burst: 50 intakes,
one flight, 50 answers. Bar 4's slowest client waits for all of it on top of the upstream.

    python -m bench.profile_burst            # CPU µs per burst and per request
    python -m bench.profile_burst --cprofile # plus the top functions
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time
import uuid
from typing import Any

from bench import profile_hit
from bench.procs import Fleet
from bench.workload import chat_body


async def burst(app: Any, clients: int) -> None:
    body = chat_body(f"burst {uuid.uuid4().hex}")
    length = str(len(body)).encode()
    sent = await asyncio.gather(*(_one(app, body, length) for _ in range(clients)))
    statuses = sorted(dict(m[0]["headers"])[b"x-cache"] for m in sent)
    assert statuses.count(b"MISS") == 1, statuses


async def _one(app: Any, body: bytes, length: bytes) -> list[Any]:
    scope = profile_hit.scope()
    scope["headers"] = [*profile_hit.HEADERS[:3], (b"content-length", length)]
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def measure(app: Any, bursts: int, clients: int, profile: bool) -> None:
    async with app.router.lifespan_context(app):
        for _ in range(5):
            await burst(app, clients)
        samples = []
        for _ in range(bursts):
            start = time.process_time()
            await burst(app, clients)
            samples.append((time.process_time() - start) * 1e6)
        samples.sort()
        best, median = samples[0], samples[len(samples) // 2]
        print(f"CPU per burst of {clients}: best {best:.0f} µs, median {median:.0f} µs")
        print(f"CPU per request: best {best / clients:.1f} µs, median {median / clients:.1f} µs")
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(bursts):
                await burst(app, clients)
            profiler.disable()
            stats = pstats.Stats(profiler)
            stats.sort_stats("tottime").print_stats(30)
            stats.sort_stats("cumulative").print_stats(50)


def main() -> None:
    import uvloop

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=40, help="bursts")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--cprofile", action="store_true")
    args = parser.parse_args()
    fleet = Fleet()
    try:
        app, _ = profile_hit.gateway_in_process(fleet)
        uvloop.run(measure(app, args.n, args.clients, args.cprofile))
    finally:
        fleet.close()


if __name__ == "__main__":
    main()
