"""Leases through whole gateways: the memory backend's in-process claims, two gateways sharing
one Redis, flights that do not re-read, a Redis answering errors."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import respx

from tests.conftest import CHAT, chat_response, make_settings, running, wait_until
from tests.redis_server import RedisServer, free_port

pytestmark = pytest.mark.redis


@pytest.fixture
def ns() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def spy_on_joins(coalescer: Any, seen: Callable[[], None]) -> None:
    """Call `seen` each time a request joins or starts a flight (behaviour unchanged)."""
    join = coalescer.join

    def counted(*args: Any, **kwargs: Any) -> Any:
        seen()
        return join(*args, **kwargs)

    coalescer.join = counted


async def test_two_gateways_on_one_redis_make_one_provider_call(
    upstream: respx.MockRouter, redis_url: str, ns: str
) -> None:
    release, started = asyncio.Event(), asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        started.set()
        await release.wait()
        return httpx.Response(200, json=chat_response())

    route = upstream.post("/chat/completions").mock(side_effect=slow)
    settings = make_settings(cache_backend="redis", redis_url=redis_url, cache_namespace=ns)
    async with running(settings) as one, running(settings) as two:
        await wait_until(lambda: one.gateway.pipeline.leases.state == "fleet")
        await wait_until(lambda: two.gateway.pipeline.leases.state == "fleet")
        ready = (await one.http.get("/readyz")).json()
        release.set()
        for gw in (one, two):  # warm: a first request pays for imports and a Redis connection
            await gw.http.post("/v1/chat/completions", json={**CHAT, "seed": 1})
        release.clear()
        started.clear()
        joined = Counter[int]()
        for i, gw in enumerate((one, two)):  # count joins: under load a fixed sleep is too short
            spy_on_joins(gw.gateway.pipeline.coalescer, lambda i=i: joined.update([i]))
        tasks = [
            asyncio.create_task(gw.http.post("/v1/chat/completions", json=CHAT))
            for gw in (one, two)
            for _ in range(8)
        ]
        await asyncio.wait_for(started.wait(), 10)
        await wait_until(lambda: joined == {0: 8, 1: 8}, within=30)  # all on their flights
        release.set()
        answers = await asyncio.gather(*tasks)
        later = await two.http.post("/v1/chat/completions", json=CHAT)
    assert ready["coalescing"] == "fleet"
    assert route.call_count == 2  # the two warm-up requests share one call too
    assert {a.status_code for a in answers} == {200}
    assert Counter(a.headers["x-cache"] for a in answers) == {"MISS": 1, "COALESCED": 15}
    assert len({a.json()["id"] for a in answers}) == 1
    assert later.headers["x-cache"] == "HIT"


async def test_requests_joining_a_running_flight_do_not_read_the_cache(
    upstream: respx.MockRouter, redis_server: RedisServer
) -> None:
    release, started = asyncio.Event(), asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        started.set()
        await release.wait()
        return httpx.Response(200, json=chat_response())

    upstream.post("/chat/completions").mock(side_effect=slow)
    settings = make_settings(cache_backend="redis", redis_url=redis_server.url)
    client = aioredis.from_url(redis_server.url)

    async def gets() -> int:
        stats = await client.info("commandstats")
        return int(stats.get("cmdstat_get", {}).get("calls", 0))

    async with running(settings) as gw:
        first = asyncio.create_task(gw.http.post("/v1/chat/completions", json=CHAT))
        await asyncio.wait_for(started.wait(), 10)
        before = await gets()
        joined = Counter[str]()
        spy_on_joins(gw.gateway.pipeline.coalescer, lambda: joined.update(["join"]))
        joiners = [
            asyncio.create_task(gw.http.post("/v1/chat/completions", json=CHAT)) for _ in range(10)
        ]
        # Every joiner parked on the flight (a fixed sleep can end first on a loaded machine,
        # and a read made after it would go uncounted).
        await wait_until(lambda: joined["join"] == 10, within=30)
        during = await gets() - before
        release.set()
        answers = [await first, *await asyncio.gather(*joiners)]
    await client.aclose()
    assert during == 0
    assert Counter(a.headers["x-cache"] for a in answers) == {"MISS": 1, "COALESCED": 10}


async def test_redis_answering_errors_is_bypassed(
    upstream: respx.MockRouter, tmp_path: Path, redis_binary: None
) -> None:
    # A replica whose primary is gone (a failover in progress): reads work, writes answer
    # READONLY errors.
    replica = RedisServer(tmp_path, extra_args=["--replicaof", "127.0.0.1", str(free_port())])
    replica.start()
    route = upstream.post("/chat/completions").mock(
        return_value=httpx.Response(200, json=chat_response())
    )
    settings = make_settings(cache_backend="redis", redis_url=replica.url)
    try:
        async with running(settings) as gw:
            answers = [await gw.http.post("/v1/chat/completions", json=CHAT) for _ in range(2)]
            stats = (await gw.http.get("/v1/cache/stats")).json()
    finally:
        replica.stop()
    assert [a.status_code for a in answers] == [200, 200]
    assert [a.headers["x-cache"] for a in answers] == ["BYPASS", "BYPASS"]
    assert route.call_count == 2
    assert stats["errors"] >= 1
