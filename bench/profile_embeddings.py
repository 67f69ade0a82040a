"""Where an embeddings hit's CPU goes: a 64 x 1536 batch, all cached, taken apart in-process.

The same set-up as `bench.profile_hit` (the real app on a fresh Redis and fake upstream,
driven by a minimal ASGI driver), for bench scenario 2: the whole request in each format next
to the limit app serving the same batch (with the minor page faults and user/system CPU of
each), then each stage of the hit path on its own. Stages run warm and in isolation, so they
sum to less than the whole: the whole request also runs the middleware and touches memory
the stages find in cache.

    python -m bench.profile_embeddings            # table of µs per stage
    python -m bench.profile_embeddings --whole    # only the four whole requests
    python -m bench.profile_embeddings --cprofile # plus the top functions of a base64 request
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import redis.asyncio as aioredis
from starlette.requests import Request
from starlette.types import ASGIApp, Message

from bench.limit_app import LimitApp
from bench.procs import Fleet
from bench.profile_hit import gateway_in_process, per_call
from bench.workload import EMBED_PATH, embedding_body, fill_limit_embeddings

BODIES = {fmt: embedding_body(0, fmt) for fmt in ("base64", "float")}
Stage = tuple[str, Callable[[], Awaitable[Any]]]


def scope(body: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": EMBED_PATH,
        "raw_path": EMBED_PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"gw"),
            (b"content-type", b"application/json"),
            (b"authorization", b"Bearer bench-key"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("gw", 80),
    }


async def call(app: ASGIApp, body: bytes) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope(body), receive, send)
    return sent


async def sync(fn: Callable[[], Any]) -> None:
    fn()


async def stage_table(gw: Any, limit: LimitApp) -> list[Stage]:
    """The hit path's stages, each callable on its own with the inputs of a base64 hit."""
    from genai_api.apis.embeddings import EmbeddingRequest, embedding_inputs
    from genai_api.apis.schema import validate
    from genai_api.controls import parse_controls
    from genai_api.embeddings.vectors import decode_many
    from genai_api.http.body import read_json
    from genai_api.http.render_embeddings import render_embeddings
    from genai_api.routes.embeddings import _encoding

    body = BODIES["base64"]
    data = orjson.loads(body)
    model = gw.models.get(data["model"])
    encoding = _encoding(gw, model)
    tenant = gw.auth.client(Request(scope(body)))
    controls = parse_controls({}, None, max_ttl=gw.settings.cache_max_ttl)
    items = embedding_inputs(data["input"], max_token=None)

    async def prepare() -> Any:
        return await gw.pipeline.prepare_embeddings(
            dict(data), items, model=model, tenant=tenant, controls=controls, encoding=encoding
        )

    batch = await prepare()
    raws = await gw.store.get_many(batch.skeys)
    outcome = await gw.pipeline.run_embeddings(batch)
    runner = gw.pipeline.embeddings
    found = await runner._lookup(batch, batch.skeys)
    first = {skey: pos for pos, skey in reversed(list(enumerate(batch.skeys)))}

    async def read() -> None:
        async def receive() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        await read_json(Request(scope(body), receive))

    async def mget_decode() -> None:
        decode_many(await gw.store.get_many(batch.skeys))

    return [
        ("Request + read_json", read),
        ("embedding_inputs", lambda: sync(lambda: embedding_inputs(data["input"], max_token=None))),
        ("pydantic validate", lambda: sync(lambda: validate(EmbeddingRequest, data))),
        ("prepare_embeddings (64 keys)", prepare),
        ("store.get_many (MGET 64)", lambda: gw.store.get_many(batch.skeys)),
        ("limit's MGET of the same keys", lambda: limit.redis.mget(batch.skeys)),
        ("decode_many (64 entries)", lambda: sync(lambda: decode_many(raws))),
        ("get_many then decode_many", mget_decode),
        ("runner._lookup (MGET + decode)", lambda: runner._lookup(batch, batch.skeys)),
        (
            "runner._answer (+ accounting)",
            lambda: sync(lambda: runner._answer(batch, found, first)),
        ),
        ("run_embeddings (lookup+decode+account)", lambda: gw.pipeline.run_embeddings(batch)),
        ("render base64", lambda: sync(lambda: render_embeddings(outcome, "base64"))),
        ("render float", lambda: sync(lambda: render_embeddings(outcome, "float"))),
    ]


async def measure(app: Any, upstream: str, args: argparse.Namespace) -> None:
    async with app.router.lifespan_context(app):
        gw = app.state.gateway
        for body in BODIES.values():
            assert (await call(app, body))[0]["status"] == 200
            hit = await call(app, body)
            assert (b"x-cache", b"HIT") in hit[0]["headers"], hit[0]["headers"]
        redis_url = os.environ["REDIS_URL"]
        await fill_limit_embeddings(redis_url, upstream, list(BODIES.values()))
        limit = LimitApp(redis_url)
        limit.redis = aioredis.Redis.from_url(redis_url)
        stages: list[Stage] = [
            (f"{who}: {fmt} whole request", lambda a=target, b=body: call(a, b))
            for fmt, body in BODIES.items()
            for who, target in (("limit app", limit), ("gateway", app))
        ]
        for name, fn in stages:
            before = resource.getrusage(resource.RUSAGE_SELF)
            for _ in range(20):
                assert (await fn())[0]["status"] == 200
            after = resource.getrusage(resource.RUSAGE_SELF)
            print(
                f"{name:<40} minor faults/call {(after.ru_minflt - before.ru_minflt) / 20:6.1f}"
                f"  user {(after.ru_utime - before.ru_utime) / 20 * 1e6:6.0f} µs"
                f"  sys {(after.ru_stime - before.ru_stime) / 20 * 1e6:5.0f} µs"
            )
        if not args.whole:
            stages += await stage_table(gw, limit)
        print(f"{'stage':<46} {'µs/call':>8}")
        for name, us in (await per_call(stages, args.n, rounds=10)).items():
            print(f"{name:<46} {us:>8.1f}", flush=True)
        if args.cprofile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(args.n):
                await call(app, BODIES["base64"])
            profiler.disable()
            pstats.Stats(profiler).sort_stats(args.sort).print_stats(40)
        await limit.redis.aclose()


def main() -> None:
    import uvloop

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=300)
    parser.add_argument("--whole", action="store_true", help="only the four whole requests")
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--sort", default="tottime", help="pstats order: tottime, cumulative")
    args = parser.parse_args()
    fleet = Fleet()
    try:
        app, upstream = gateway_in_process(fleet)
        try:  # as a served worker does (genai_api.cli.worker_app)
            from genai_api.malloc import keep_freed_memory

            keep_freed_memory()
        except ImportError:  # a checkout from before it
            pass
        uvloop.run(measure(app, upstream, args))
    finally:
        fleet.close()


if __name__ == "__main__":
    main()
