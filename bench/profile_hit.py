"""Where a cache hit's CPU goes: the gateway's hit path taken apart, stage by stage, in-process.

Runs the real app (Redis store, a stored entry) through a minimal ASGI driver, so no HTTP
server or load generator adds noise, and times each stage of the hit path on its own with
the same inputs. Stages are timed in isolation, so they do not sum exactly to the whole.

    python -m bench.profile_hit            # table of µs per stage
    python -m bench.profile_hit --cprofile # plus the top functions of the whole request
    BENCH_REDIS_MODE=cluster python -m bench.profile_hit   # on a 3+3 loopback Redis Cluster
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from starlette.requests import Request
from starlette.types import ASGIApp, Message

from bench.limit_app import LimitApp, chat_key
from bench.procs import Fleet, cores, free_port
from bench.workload import CHAT_PATH, chat_hits

BODY = chat_hits(1)[0]
HEADERS = [
    (b"host", b"gw"),
    (b"content-type", b"application/json"),
    (b"authorization", b"Bearer bench-key"),
    (b"content-length", str(len(BODY)).encode()),
]


def scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": CHAT_PATH,
        "raw_path": CHAT_PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": HEADERS,
        "client": ("127.0.0.1", 1),
        "server": ("gw", 80),
    }


async def call(app: ASGIApp) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope(), receive, send)
    return sent


async def per_call(
    stages: list[tuple[str, Callable[[], Awaitable[Any]]]], n: int, rounds: int = 15
) -> dict[str, float]:
    """µs per call of each stage: the best of `rounds` batches, stages interleaved per round.

    Interleaving makes every stage see the same neighbours (this is a shared machine) and the
    best batch is the one least disturbed by them.
    """
    best = {name: float("inf") for name, _ in stages}
    batch = max(1, n // rounds)
    for _ in range(rounds):
        for name, fn in stages:
            start = time.process_time()
            for _ in range(batch):
                await fn()
            best[name] = min(best[name], (time.process_time() - start) / batch * 1e6)
    return best


async def measure(app: Any, n: int, profile: bool) -> None:
    import os

    from genai_api.controls import parse_controls
    from genai_api.entry import Entry
    from genai_api.http.body import read_json
    from genai_api.http.render import render
    from genai_api.keys import request_key
    from genai_api.protocol import ChatCompletionRequest, validate
    from genai_api.routes.completions import complete

    async with app.router.lifespan_context(app):
        gw = app.state.gateway
        first = await call(app)
        assert first[0]["status"] == 200, first
        hit = await call(app)
        assert (b"x-cache", b"HIT") in hit[0]["headers"], hit[0]["headers"]
        body = orjson.loads(BODY)
        model = gw.models.get(body["model"])
        tenant = gw.auth.client(Request(scope()))
        controls = parse_controls({}, None, max_ttl=gw.settings.cache_max_ttl)
        prepared = gw.pipeline.prepare(
            "chat.completions", dict(body), model=model, tenant=tenant, controls=controls
        )
        raw = await gw.store.get(prepared.skey)
        entry = Entry.decode(raw)
        outcome = await gw.pipeline.run(prepared)

        async def whole() -> None:
            await call(app)

        async def limit_whole() -> None:
            await call(limit)

        async def route_only() -> None:
            async def receive() -> Message:
                return {"type": "http.request", "body": BODY, "more_body": False}

            request = Request(scope(), receive)
            request.scope["app"] = app
            response = await complete(
                request, gw, tenant, "chat.completions", ChatCompletionRequest
            )
            sent: list[Message] = []

            async def send(message: Message) -> None:
                sent.append(message)

            await response(request.scope, receive, send)

        async def sync(fn: Callable[[], Any]) -> None:
            fn()

        cluster = os.environ.get("REDIS_MODE") == "cluster"
        limit = LimitApp(os.environ["REDIS_URL"], cluster=cluster)
        if cluster:
            limit.redis = RedisCluster.from_url(os.environ["REDIS_URL"])
        else:
            limit.redis = aioredis.Redis.from_url(os.environ["REDIS_URL"])
        await limit.redis.set(chat_key(BODY), orjson.dumps(outcome.entry.response))
        assert (await call(limit))[0]["status"] == 200
        if hasattr(gw.store, "client"):
            extra = [
                ("raw redis GET (the store's client)", lambda: gw.store.client.get(prepared.skey)),
                ("redis GET, default pool, no timeouts", lambda: limit.redis.get(prepared.skey)),
            ]
        else:
            extra = []

        async def read_validate_prepare_run() -> None:
            async def receive() -> Message:
                return {"type": "http.request", "body": BODY, "more_body": False}

            request = Request(scope(), receive)
            data = await read_json(request)
            validate(ChatCompletionRequest, data)
            m = gw.models.get(data["model"])
            c = parse_controls(request.headers, data.pop("cache", None), max_ttl=1)
            await gw.pipeline.run(
                gw.pipeline.prepare("chat.completions", data, model=m, tenant=tenant, controls=c)
            )

        async def read_only() -> None:
            async def receive() -> Message:
                return {"type": "http.request", "body": BODY, "more_body": False}

            await read_json(Request(scope(), receive))

        async def run_only() -> None:
            await gw.pipeline.run(prepared)

        stages: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("limit app: whole request (same driver)", limit_whole),
            ("gateway: whole request through the ASGI app", whole),
            ("complete() + Response, no framework", route_only),
            ("orjson.loads(body)", lambda: sync(lambda: orjson.loads(BODY))),
            (
                "pydantic validate (strict model)",
                lambda: sync(lambda: validate(ChatCompletionRequest, body)),
            ),
            ("auth: tenant id from bearer", lambda: sync(lambda: gw.auth.client(Request(scope())))),
            ("parse_controls", lambda: sync(lambda: parse_controls({}, None, max_ttl=1))),
            (
                "request_key (canonical JSON + sha256)",
                lambda: sync(lambda: request_key("chat.completions", body, tenant=tenant)),
            ),
            (
                "pipeline.prepare (key + storage key)",
                lambda: sync(
                    lambda: gw.pipeline.prepare(
                        "chat.completions", body, model=model, tenant=tenant, controls=controls
                    )
                ),
            ),
            ("store.get (as the pipeline calls it)", lambda: gw.store.get(prepared.skey)),
            *extra,
            ("Entry.decode (orjson.loads entry)", lambda: sync(lambda: Entry.decode(raw))),
            ("pipeline.run on a hit (lookup + account)", lambda: gw.pipeline.run(prepared)),
            ("pipeline.run via async def", run_only),
            ("Request + read_json (body, orjson)", read_only),
            ("read+validate+prepare+run", read_validate_prepare_run),
            ("render (orjson.dumps + headers + Response)", lambda: sync(lambda: render(outcome))),
        ]
        del entry
        print(f"{'stage':<46} {'µs/call':>8}")
        for name, us in (await per_call(stages, n)).items():
            print(f"{name:<46} {us:>8.1f}", flush=True)
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(n):
                await call(app)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(35)


def gateway_in_process(fleet: Fleet) -> tuple[Any, str]:
    """The gateway app (not served) on a fresh Redis and fake upstream; this process pinned."""
    import os

    server_core, load_core = cores()
    mode = os.environ.get("BENCH_REDIS_MODE", "standalone")
    if mode == "cluster":
        from bench.redis_cluster import start_cluster

        redis_url = start_cluster(fleet, load_core).url
    else:
        _, redis_url = fleet.redis(load_core)
    port = free_port()
    upstream = fleet.start(
        "upstream",
        fleet.python("bench.fake_upstream", "--port", str(port)),
        port=port,
        core=load_core,
    )
    if server_core is not None:
        os.sched_setaffinity(0, {int(server_core)})
    os.environ.update(
        CACHE_BACKEND=os.environ.get("BENCH_CACHE_BACKEND", "redis"),
        REDIS_URL=redis_url,
        REDIS_MODE=mode,
        PROVIDER="openai",
        OPENAI_API_KEY="sk-b",
        OPENAI_BASE_URL=upstream.url + "/v1",
        GATEWAY_API_KEYS="bench-key",
        LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
    )
    from bench.gateway_server import create_gateway

    return create_gateway(), upstream.url


def main() -> None:
    import uvloop

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--cprofile", action="store_true")
    args = parser.parse_args()
    fleet = Fleet()
    try:
        app, _ = gateway_in_process(fleet)
        uvloop.run(measure(app, args.n, args.cprofile))
    finally:
        fleet.close()


if __name__ == "__main__":
    main()
