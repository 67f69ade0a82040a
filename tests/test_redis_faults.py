"""What a sick Redis costs, on a real redis-server frozen with SIGSTOP (it accepts bytes and
never answers: a hung Redis): one failure per request at most, a breaker that needs several
to open, requests that skip Redis while a background probe waits for it, a pool warmed at
start-up."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import respx

from genai_api.settings import Settings
from genai_api.store.redis import WARM_CONNECTIONS, RedisStore, redis_options
from tests.conftest import CHAT, Running, chat_response, make_settings, running
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis

PATH = "/v1/chat/completions"


def settings(server: RedisServer, **overrides: Any) -> Settings:
    # No L1: a hit answered from this process's memory would never meet the sick Redis.
    values: dict[str, Any] = {
        "redis_timeout": 0.2,
        "redis_breaker_seconds": 30,
        "cache_l1_max_bytes": 0,
    }
    return make_settings(cache_backend="redis", redis_url=server.url, **{**values, **overrides})


@contextmanager
def hung(server: RedisServer) -> Iterator[None]:
    assert server.proc is not None
    server.proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        server.proc.send_signal(signal.SIGCONT)


async def stored(gw: Running, body: dict[str, Any] = CHAT) -> None:
    """Ask for `body` until it is a HIT: its entry is in Redis and the first request's
    background work (script loading, the fill's reply) is over. On a loaded machine a first
    request's round trip can pass the tests' short `REDIS_TIMEOUT` and bypass, storing
    nothing: a test that hangs Redis next would then see a MISS it did not cause."""
    for _ in range(20):
        answer = await gw.http.post(PATH, json=body)
        if answer.headers["x-cache"] == "HIT":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never stored: {answer.headers['x-cache']}")


def chat(content: str) -> dict[str, Any]:
    return {**CHAT, "messages": [{"role": "user", "content": content}]}


@pytest.fixture
def provider(upstream: respx.MockRouter) -> respx.Route:
    return upstream.post("/chat/completions").mock(
        return_value=httpx.Response(200, json=chat_response())
    )


async def test_a_request_meets_at_most_one_redis_failure(
    provider: respx.Route, redis_server: RedisServer
) -> None:
    async with running(settings(redis_server, redis_breaker_failures=3)) as gw:
        await stored(gw, chat("warm"))
        # Start-up work still running in the background (the leases' script loading, late on
        # a loaded machine) would meet the hang too: only the request's operations count.
        background = list(gw.gateway.pipeline.leases._tasks)  # type: ignore[attr-defined]
        await asyncio.gather(*background)
        with hung(redis_server):
            # A miss: lookup, lease, store and release would each wait for the hung Redis.
            answer = await gw.http.post(PATH, json=chat("a miss while Redis hangs"))
        store = gw.gateway.store
    assert (answer.status_code, answer.headers["x-cache"]) == (200, "BYPASS")
    assert store.breaker.failures == 1  # the lookup's; the rest of the request skipped Redis
    assert not store.breaker.is_open


async def test_one_slow_moment_does_not_stop_caching(
    provider: respx.Route, redis_server: RedisServer
) -> None:
    async with running(settings(redis_server, redis_timeout=0.5)) as gw:
        await stored(gw)
        breaker = gw.gateway.store.breaker
        with hung(redis_server):
            slow = await gw.http.post(PATH, json=CHAT)
        assert (breaker.failures, breaker.is_open) == (1, False)
        after = await gw.http.post(PATH, json=CHAT)
    assert slow.headers["x-cache"] == "BYPASS"
    assert after.headers["x-cache"] == "HIT"  # one failure left the breaker closed


async def test_open_breaker_skips_redis_until_a_background_probe_answers(
    provider: respx.Route, redis_server: RedisServer
) -> None:
    tuned = settings(redis_server, redis_breaker_failures=1, redis_breaker_seconds=0.05)
    async with running(tuned) as gw:
        await stored(gw)
        # Start-up work still running in the background would meet the hang too (as in the
        # first test): only the requests' operations count. A failure counted before the
        # hang (a loaded machine's slow start) is the baseline, not the request's.
        await asyncio.gather(*gw.gateway.pipeline.leases._tasks)
        breaker = gw.gateway.store.breaker
        for _ in range(100):  # a breaker opened by a slow start closes once a probe answers
            if not breaker.is_open:
                break
            await asyncio.sleep(0.05)
        before = breaker.failures
        with hung(redis_server):
            opened = await gw.http.post(PATH, json=CHAT)
            assert breaker.is_open and breaker.failures == before + 1
            during = []
            for _ in range(5):  # several cool-downs: each lets one probe go, none a request
                await asyncio.sleep(0.06)
                during.append(await gw.http.post(PATH, json=CHAT))
            assert breaker.failures == before + 1  # no request tried the hung Redis
        for _ in range(100):  # Redis is back: a probe closes the breaker, no /readyz needed
            again = await gw.http.post(PATH, json=CHAT)
            if again.headers["x-cache"] == "HIT":
                break
            await asyncio.sleep(0.05)
    assert opened.headers["x-cache"] == "BYPASS"
    assert {a.headers["x-cache"] for a in during} == {"BYPASS"}
    assert again.headers["x-cache"] == "HIT"


async def test_start_up_warms_the_connection_pool(redis_server: RedisServer) -> None:
    client = aioredis.from_url(redis_server.url)
    try:
        before = (await client.info("clients"))["connected_clients"]
        async with running(settings(redis_server)):
            during = (await client.info("clients"))["connected_clients"]
    finally:
        await client.aclose()
    assert during - before >= WARM_CONNECTIONS


async def test_warming_retries_failed_connects_and_returns_every_connection(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a loaded machine single connects pass `REDIS_TIMEOUT`: warming tries them again, and
    none of the connections it opened stays checked out of the pool."""
    options = redis_options(redis_server.url, host="", port=0, password=None, db=0)
    store = RedisStore(options, timeout=0.2, max_connections=100, breaker_seconds=1)
    pool = store.client.connection_pool
    real = pool.get_connection
    failures = iter(range(10))

    async def flaky() -> Any:
        if next(failures, None) is not None:
            await asyncio.sleep(0)
            raise aioredis.ConnectionError("connect timed out")
        return await real()

    monkeypatch.setattr(pool, "get_connection", flaky)
    try:
        await store.warm()
        assert len(pool._in_use_connections) == 0
        assert len(pool._available_connections) == WARM_CONNECTIONS
    finally:
        await store.close()


async def test_a_small_pool_warms_up_without_waiting_for_the_subscriptions_connections(
    redis_url: str,
) -> None:
    """The two subscriptions hold two of the pool's connections for good: warming asks for
    the rest only, instead of waiting its whole `WARM_SECONDS` for connections never freed."""
    from tests.conftest import make_settings, running

    settings = make_settings(cache_backend="redis", redis_url=redis_url, redis_max_connections=4)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with running(settings) as gw:
        took = loop.time() - started
        await gw.http.get("/readyz")
    assert took < 2.5  # was WARM_SECONDS (3 s) and more
