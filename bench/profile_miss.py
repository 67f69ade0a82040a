"""Where a cache miss's CPU goes, with a 0-latency upstream: the gateway's miss path in parts.

Same in-process set-up as `bench.profile_hit` (real app, real Redis, the fake upstream in its
own process). Each request is a new body, so every whole-request sample is a true miss.

    python -m bench.profile_miss            # table of µs per stage
    python -m bench.profile_miss --cprofile # plus the top functions of a whole miss
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import uuid
from typing import Any

import aiohttp
import orjson

from bench import profile_hit
from bench.procs import Fleet
from bench.workload import CHAT_PATH, chat_body


async def measure(app: Any, upstream: str, n: int, profile: bool = False) -> None:
    from genai_api.entry import Entry

    async with app.router.lifespan_context(app):
        gw = app.state.gateway
        provider, store = gw.provider, gw.store
        body = orjson.loads(chat_body("profile"))
        entry = Entry.fresh(await provider.create("/chat/completions", body), model="m")
        encoded = entry.encode()
        session = aiohttp.ClientSession()

        async def whole_miss() -> None:
            profile_hit.BODY = chat_body(f"miss {uuid.uuid4().hex}")
            length = str(len(profile_hit.BODY)).encode()
            profile_hit.HEADERS[3] = (b"content-length", length)
            sent = await profile_hit.call(app)
            assert sent[0]["status"] == 200

        async def sdk_post() -> None:
            await provider.create("/chat/completions", body)

        async def raw_aiohttp_post() -> None:
            async with session.post(upstream + CHAT_PATH, data=orjson.dumps(body)) as response:
                orjson.loads(await response.read())

        async def lookup_miss() -> None:
            await store.get("bench:absent:" + uuid.uuid4().hex)

        async def store_set() -> None:
            await store.set("bench:profile:set", encoded, 60)

        stages = [
            ("gateway: whole miss through the ASGI app", whole_miss),
            ("provider.create (openai SDK + aiohttp)", sdk_post),
            ("raw aiohttp POST + orjson (passthrough)", raw_aiohttp_post),
            ("store.get of an absent key", lookup_miss),
            ("store.set of the entry", store_set),
        ]
        print(f"{'stage':<46} {'µs/call':>8}")
        for name, us in (await profile_hit.per_call(stages, n)).items():
            print(f"{name:<46} {us:>8.1f}", flush=True)
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(n):
                await whole_miss()
            profiler.disable()
            stats = pstats.Stats(profiler)
            stats.sort_stats("tottime").print_stats(40)
            stats.sort_stats("cumulative").print_stats(60)
        await session.close()


def main() -> None:
    import uvloop

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=1500)
    parser.add_argument("--cprofile", action="store_true", help="top functions of a whole miss")
    args = parser.parse_args()
    fleet = Fleet()
    try:
        app, upstream = profile_hit.gateway_in_process(fleet)
        uvloop.run(measure(app, upstream, args.n, args.cprofile))
    finally:
        fleet.close()


if __name__ == "__main__":
    main()
