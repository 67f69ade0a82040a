"""Where a cache hit's CPU goes: the gateway's hit path taken apart, stage by stage, in-process.

Runs the real app (Redis store, a stored entry) through a minimal ASGI driver, so no HTTP
server or load generator adds noise, and times each stage of the hit path on its own with
the same inputs. Stages are timed in isolation, so they do not sum exactly to the whole.

    python -m bench.profile_hit 2>/dev/null   # table of µs per stage (access lines: stderr)
    python -m bench.profile_hit --cprofile    # plus the top functions of the whole request
    python -m bench.profile_hit --api responses   # the same for POST /v1/responses
    BENCH_LOG_LEVEL=WARNING BENCH_LOG_FORMAT=json python -m bench.profile_hit  # other settings
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
from bench.workload import CHAT_PATH, RESPONSES_PATH, chat_hits, responses_hits

# The API profiled (`--api`): its path, and the body of the hit.
PATH = CHAT_PATH
BODY = chat_hits(1)[0]


def headers() -> list[tuple[bytes, bytes]]:
    return [
        (b"host", b"gw"),
        (b"content-type", b"application/json"),
        (b"authorization", b"Bearer bench-key"),
        (b"content-length", str(len(BODY)).encode()),
    ]


def scope(extra: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers() + extra if extra else headers(),
        "client": ("127.0.0.1", 1),
        "server": ("gw", 80),
    }


async def call(app: ASGIApp, extra: list[tuple[bytes, bytes]] | None = None) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope(extra), receive, send)
    return sent


GZIP = [(b"accept-encoding", b"gzip, deflate")]  # what httpx (the openai SDK) sends
ORIGIN = [(b"origin", b"http://127.0.0.1:5173")]


def outer_stages(app: Any) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
    """The whole request with compression and CORS as configured, off, and on for clients
    that do and do not ask for them: the hot path's `Compressor` and `app.outer` are switched
    per stage (Starlette's own GZipMiddleware too, as the reference the README cites)."""
    from starlette.middleware.gzip import GZipMiddleware

    from genai_api.app import GZIP_LEVEL
    from genai_api.http.compression import Compressor
    from genai_api.http.cors import with_cors
    from genai_api.http.hot_routes import HotEndpoints

    endpoints = app.hot
    while not isinstance(endpoints, HotEndpoints):
        endpoints = endpoints.app  # inside the hot path's middlewares
    configured = (app.outer, endpoints.compress)
    always = Compressor(minimum_size=1, level=GZIP_LEVEL)
    starlette_gzip = GZipMiddleware(app._dispatch, minimum_size=1400, compresslevel=GZIP_LEVEL)
    cors = with_cors(app._dispatch, (ORIGIN[0][1].decode(),))

    def stage(outer: Any, compress: Any, extra: list[tuple[bytes, bytes]] | None) -> Any:
        async def run() -> None:
            app.outer, endpoints.compress = outer, compress
            try:
                await call(app, extra)
            finally:
                app.outer, endpoints.compress = configured

        return run

    gzip = configured[1]
    return [
        ("whole request, no gzip, no CORS", stage(None, None, None)),
        ("whole request, as configured", stage(*configured, None)),
        ("  ... client accepts gzip (answer < minimum)", stage(None, gzip, GZIP)),
        ("  ... gzip whatever the size, client accepts", stage(None, always, GZIP)),
        ("  ... Starlette's GZipMiddleware, no gzip asked", stage(starlette_gzip, None, None)),
        ("  ... Starlette's, client accepts (answer < min)", stage(starlette_gzip, None, GZIP)),
        ("  ... CORS on, no Origin (a server client)", stage(cors, gzip, None)),
        ("  ... CORS on, a page's cross-origin call", stage(cors, gzip, ORIGIN)),
    ]


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

    from genai_api.apis import BY_PATH
    from genai_api.apis.schema import validate
    from genai_api.controls import parse_controls
    from genai_api.entry import Entry
    from genai_api.http.body import read_json
    from genai_api.http.render import render
    from genai_api.keys import request_key
    from genai_api.routes.completions import complete

    api = BY_PATH[PATH.removeprefix("/v1")]
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
            api, dict(body), model=model, tenant=tenant, controls=controls
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
            response = await complete(request, gw, tenant, api)
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
            validate(api.schema, data)
            m = gw.models.get(data["model"])
            c = parse_controls(request.headers, data.pop("cache", None), max_ttl=1)
            await gw.pipeline.run(
                gw.pipeline.prepare(api, data, model=m, tenant=tenant, controls=c)
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
            *outer_stages(app),
            *(await serving_stages(app, limit)),
            ("complete() + Response, no framework", route_only),
            ("orjson.loads(body)", lambda: sync(lambda: orjson.loads(BODY))),
            (
                "pydantic validate (strict model)",
                lambda: sync(lambda: validate(api.schema, body)),
            ),
            (
                "api.check (the shortcut, else pydantic)",
                lambda: sync(lambda: api.check(body)),
            ),
            ("auth: tenant id from bearer", lambda: sync(lambda: gw.auth.client(Request(scope())))),
            ("parse_controls", lambda: sync(lambda: parse_controls({}, None, max_ttl=1))),
            (
                "request_key (canonical JSON + sha256)",
                lambda: sync(lambda: request_key(api.name, body, tenant=tenant)),
            ),
            (
                "pipeline.prepare (key + storage key)",
                lambda: sync(
                    lambda: gw.pipeline.prepare(
                        api, body, model=model, tenant=tenant, controls=controls
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


def raw_request() -> bytes:
    """The request as a client writes it to the socket (for the server protocol's stages)."""
    return (
        f"POST {PATH} HTTP/1.1\r\n".encode()
        + b"".join(b"%s: %s\r\n" % header for header in headers())
        + b"\r\n"
        + BODY
    )


async def serving_stages(app: Any, limit: Any) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
    """What `serve` adds to the app per request: the server protocol (uvicorn's httptools
    one and ours, with a trivial app and with the gateway), the hot path's middlewares one
    by one, the metrics count and the access line."""
    raw = raw_request()
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from bench.protocol_driver import ProtocolDriver, trivial_app
    from genai_api.http.bounded_protocol import BoundedHttpToolsProtocol
    from genai_api.http.hot_routes import HotEndpoints
    from genai_api.http.limits import BodyLimitMiddleware
    from genai_api.http.observe import ObserveMiddleware

    plain = await ProtocolDriver.start(HttpToolsProtocol, trivial_app)
    bounded = await ProtocolDriver.start(BoundedHttpToolsProtocol, trivial_app)
    served = await ProtocolDriver.start(BoundedHttpToolsProtocol, app)
    limit_served = await ProtocolDriver.start(HttpToolsProtocol, limit)
    hot = app.hot
    assert isinstance(hot, ObserveMiddleware), hot
    limited = hot.app  # the hot path is ObserveMiddleware(BodyLimitMiddleware(HotEndpoints))
    endpoints = limited.app
    assert isinstance(limited, BodyLimitMiddleware) and isinstance(endpoints, HotEndpoints)
    metrics, access = app.state.gateway.metrics, hot.access

    async def through(asgi: Any) -> None:
        request = scope()
        request["app"] = app

        async def receive() -> Message:
            return {"type": "http.request", "body": BODY, "more_body": False}

        async def send(message: Message) -> None:
            return None

        await asgi(request, receive, send)

    async def sync(fn: Callable[[], Any]) -> None:
        fn()

    return [
        ("server: httptools protocol, trivial app", lambda: plain.request(raw)),
        ("server: bounded protocol, trivial app", lambda: bounded.request(raw)),
        ("server: bounded protocol, the gateway", lambda: served.request(raw)),
        ("server: httptools protocol, the limit app", lambda: limit_served.request(raw)),
        ("hot path: endpoints only", lambda: through(endpoints)),
        ("hot path: + body limit", lambda: through(limited)),
        ("hot path: + observe (metrics, access line)", lambda: through(hot)),
        (
            "metrics.request (one count)",
            lambda: sync(lambda: metrics.request("chat.completions", "gpt-4o-mini", "HIT", 200)),
        ),
        (
            "access line (AccessLog.write)",
            lambda: sync(lambda: access.write("POST", CHAT_PATH, 200, "HIT", "gpt-4o-mini", 0.4)),
        ),
    ]


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
        LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "INFO"),
        LOG_FORMAT=os.environ.get("BENCH_LOG_FORMAT", "text"),
    )
    print(f"gateway: LOG_LEVEL={os.environ['LOG_LEVEL']} LOG_FORMAT={os.environ['LOG_FORMAT']}")
    from bench.gateway_server import create_gateway

    return create_gateway(), upstream.url


def main() -> None:
    import uvloop

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--api", choices=("chat", "responses"), default="chat")
    args = parser.parse_args()
    if args.api == "responses":
        global PATH, BODY
        PATH, BODY = RESPONSES_PATH, responses_hits(1)[0]
    fleet = Fleet()
    try:
        app, _ = gateway_in_process(fleet)
        uvloop.run(measure(app, args.n, args.cprofile))
    finally:
        fleet.close()


if __name__ == "__main__":
    main()
