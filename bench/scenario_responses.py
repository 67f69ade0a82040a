"""Scenario 6, the Responses API: hits at 32 connections against the limit app (which
hashes, GETs and returns the stored bytes, as for chat), and the time to the first event of
a streamed hit, next to a streamed chat hit's measured the same way.

A streamed hit is measured one request at a time (no load: what a user waits for the
first event), from sending the request to the first body bytes, over fresh connections of
one keep-alive client; the stream was stored by a streamed miss, so the hit replays it.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import aiohttp

from bench import workload, wrk
from bench.scenarios import Bar, Env
from bench.side import Comparison, Target

STREAMED_HITS = 200


def responses_hits(env: Env) -> tuple[list[Comparison], list[Bar]]:
    bodies = workload.responses_hits()
    path = workload.RESPONSES_PATH
    asyncio.run(workload.warm_gateway(env.gateway.url, path, bodies))
    asyncio.run(workload.fill_limit_chat(env.redis_url, env.upstream.url, bodies, path))
    load = wrk.Load(bodies)
    cmp = env.compare(
        "6 responses, all hits",
        [
            Target("limit", env.limit, env.limit.url + path, load),
            Target("gateway", env.gateway, env.gateway.url + path, load),
        ],
        connections=32,
    )
    errors = cmp.errors("gateway") + cmp.errors("limit")
    responses_ms = asyncio.run(_first_event_ms(env.gateway.url, path, stream_body("responses")))
    chat_ms = asyncio.run(_first_event_ms(env.gateway.url, workload.CHAT_PATH, stream_body("chat")))
    p50, chat_p50 = statistics.median(responses_ms), statistics.median(chat_ms)
    p99 = sorted(responses_ms)[int(len(responses_ms) * 0.99) - 1]
    return [cmp], [
        Bar(
            "6 responses hits",
            "throughput / limit",
            cmp.ratio("gateway"),
            ">= 0.60",
            cmp.ratio("gateway") >= 0.6 and errors == 0,
            f"{errors} errors",
        ),
        Bar(
            "6 responses hits",
            "p99 / limit p99",
            cmp.ratio("gateway", "p99_ms"),
            "<= 1.50",
            cmp.ratio("gateway", "p99_ms") <= 1.5,
        ),
        Bar(
            "6 responses stream hit",
            "ms to first event, p50",
            p50,
            "shown",
            None,
            f"p99 {p99:.2f} ms; a streamed chat hit: p50 {chat_p50:.2f} ms "
            f"({p50 / chat_p50:.2f} x)",
        ),
    ]


def stream_body(api: str) -> bytes:
    question = "Streamed question: where is my order number 77?"
    if api == "chat":
        return workload.chat_body(question)[:-1] + b',"stream":true}'
    return workload.responses_body(question, stream=True)


async def _first_event_ms(gateway: str, path: str, body: bytes) -> list[float]:
    """Milliseconds to the first body bytes of `STREAMED_HITS` streamed hits, one at a time
    (the first request, a miss that stores the stream, is not counted)."""
    seen: list[float] = []
    async with aiohttp.ClientSession() as session:
        for n in range(STREAMED_HITS + 1):
            start = time.perf_counter()
            async with session.post(gateway + path, data=body, headers=workload.AUTH) as answer:
                if answer.status != 200:
                    raise RuntimeError(f"streamed {path}: {answer.status}")
                await answer.content.readany()
                first = time.perf_counter() - start
                await answer.read()
                status = answer.headers.get("X-Cache")
            if n and status != "HIT":
                raise RuntimeError(f"streamed {path} is not a hit after its miss: {status}")
            if n:
                seen.append(first * 1000)
    return seen
