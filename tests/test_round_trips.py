"""What a request costs in Redis round trips, through the HTTP API on a real redis-server.

The flight's claim reads the entry in the round trip that takes the lease on a miss, so a
request looks only at the L1 first: a miss makes two round trips (claim, then store), a hit
the L1 does not hold makes one (the claim finds it, and the L1 keeps it), an L1 hit none.
Every Redis operation of a request goes through `RedisStore._call`, which the tests count.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import respx

from genai_api.store.near import NearStore
from genai_api.store.redis import RedisStore
from tests.conftest import CHAT, chat_response, make_settings, running, wait_until
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis

PATH = "/v1/chat/completions"


def _settings(url: str, namespace: str) -> Any:
    return make_settings(
        cache_backend="redis", redis_url=url, cache_namespace=namespace, cache_l1_seconds=60
    )


def _redis(gw: Any) -> RedisStore:
    store = gw.gateway.store
    return store.redis if isinstance(store, NearStore) else store


def count_round_trips(gw: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one with every Redis operation the gateway makes."""
    store = _redis(gw)
    real = store._call
    made: list[int] = []

    async def counted(op: Callable[[], Awaitable[Any]], **kwargs: Any) -> Any:
        made.append(1)
        return await real(op, **kwargs)

    monkeypatch.setattr(store, "_call", counted)
    return made


async def _listening(*gateways: Any) -> None:
    await wait_until(lambda: all(gw.gateway.store.listening for gw in gateways))


async def test_a_miss_makes_two_round_trips_and_an_l1_hit_none(
    upstream: respx.MockRouter, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    async with running(_settings(redis_server.url, f"t{uuid.uuid4().hex[:12]}")) as gw:
        await _listening(gw)
        made = count_round_trips(gw, monkeypatch)
        miss = await gw.http.post(PATH, json=CHAT)
        at_miss = len(made)
        first = await gw.http.post(PATH, json=CHAT)
        at_first = len(made)
        held = await gw.http.post(PATH, json=CHAT)
    assert [a.headers["x-cache"] for a in (miss, first, held)] == ["MISS", "HIT", "HIT"]
    assert at_miss == 2  # the claim (which read the key and took the lease), the store
    assert at_first == 3  # a claim that found it (the store itself fills no L1)
    assert len(made) == 3  # the L1 answered
    assert gw.gateway.store.hits == 1
    assert upstream.routes[0].call_count == 1


async def test_a_cold_hit_is_read_by_the_claim_and_kept_in_the_l1(
    upstream: respx.MockRouter, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    settings = _settings(redis_server.url, f"t{uuid.uuid4().hex[:12]}")
    async with running(settings) as a, running(settings) as b:
        await _listening(a, b)
        await a.http.post(PATH, json=CHAT)  # stored by another replica
        made = count_round_trips(b, monkeypatch)
        cold = await b.http.post(PATH, json=CHAT)
        at_cold = len(made)
        warm = await b.http.post(PATH, json=CHAT)
        stats = (await b.http.get("/v1/cache/stats")).json()
    assert cold.headers["x-cache"] == "HIT" and warm.headers["x-cache"] == "HIT"
    assert cold.content == warm.content
    assert at_cold == 1 and len(made) == 1  # one claim that found it; then the L1 answers
    assert b.gateway.store.hits == 1
    assert stats["hits"] >= 2 and stats["coalesced"] == 0  # b's own, read back
    assert upstream.routes[0].call_count == 1


async def test_a_burst_of_cold_hits_is_one_read_and_every_answer_a_hit(
    upstream: respx.MockRouter, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    settings = _settings(redis_server.url, f"t{uuid.uuid4().hex[:12]}")
    async with running(settings) as a, running(settings) as b:
        await _listening(a, b)
        await a.http.post(PATH, json=CHAT)
        made = count_round_trips(b, monkeypatch)
        burst = await asyncio.gather(*(b.http.post(PATH, json=CHAT) for _ in range(20)))
        stats = (await b.http.get("/v1/cache/stats")).json()
    assert [r.headers["x-cache"] for r in burst] == ["HIT"] * 20  # answered from the cache
    assert len(made) == 1
    assert (stats["hits"], stats["coalesced"]) == (20, 0)
    assert upstream.routes[0].call_count == 1


async def test_a_max_age_request_is_not_answered_by_a_flight_that_judged_for_another(
    upstream: respx.MockRouter, redis_server: RedisServer
) -> None:
    """A plain request whose flight finds the stored entry must not answer a concurrent
    `max-age=0` request with it: that one wants nothing older than now."""
    upstream.post("/chat/completions").mock(
        side_effect=[
            httpx.Response(200, json=chat_response("first")),
            httpx.Response(200, json=chat_response("fresh")),
        ]
    )
    settings = _settings(redis_server.url, f"t{uuid.uuid4().hex[:12]}")
    async with running(settings) as a, running(settings) as b:
        await _listening(a, b)
        await a.http.post(PATH, json=CHAT)
        await asyncio.sleep(1.1)  # ages are whole seconds: the entry is now older than 0 s
        plain, strict = await asyncio.gather(
            b.http.post(PATH, json=CHAT),
            b.http.post(PATH, json=CHAT, headers={"Cache-Control": "max-age=0"}),
        )
    assert plain.headers["x-cache"] == "HIT"
    assert plain.json()["choices"][0]["message"]["content"] == "first"
    assert strict.headers["x-cache"] == "MISS"
    assert strict.json()["choices"][0]["message"]["content"] == "fresh"


async def test_a_failed_claim_is_counted_as_the_lookup_it_replaced(
    upstream: respx.MockRouter, redis_server: RedisServer
) -> None:
    """With Redis down each request's claim fails where its lookup used to: BYPASS, and one
    error counted per request, as before."""
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    async with running(_settings(redis_server.url, f"t{uuid.uuid4().hex[:12]}")) as gw:
        redis_server.stop()
        down = [await gw.http.post(PATH, json={**CHAT, "user": f"u{i}"}) for i in range(3)]
        redis_server.start()
        for _ in range(100):  # the breaker's probe closes it once Redis answers
            if (await gw.http.get("/readyz")).status_code == 200:
                break
            await asyncio.sleep(0.05)
        stats = (await gw.http.get("/v1/cache/stats")).json()
    assert [(a.status_code, a.headers["x-cache"]) for a in down] == [(200, "BYPASS")] * 3
    assert (stats["bypassed"], stats["errors"]) == (3, 3)


async def test_streamed_and_whole_requests_joining_a_cold_hit_are_hits(
    upstream: respx.MockRouter, redis_server: RedisServer
) -> None:
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    settings = _settings(redis_server.url, f"t{uuid.uuid4().hex[:12]}")
    async with running(settings) as a, running(settings) as b:
        await _listening(a, b)
        await a.http.post(PATH, json=CHAT)
        streamed = {**CHAT, "stream": True}
        burst = await asyncio.gather(
            *(b.http.post(PATH, json=body) for body in (streamed, CHAT, streamed, CHAT, streamed))
        )
        stats = (await b.http.get("/v1/cache/stats")).json()
    assert [r.headers["x-cache"] for r in burst] == ["HIT"] * 5
    for answer in burst[::2]:
        assert answer.text.rstrip().endswith("data: [DONE]")
        assert "Hello there!" in answer.text
    assert stats["coalesced"] == 0
    assert upstream.routes[0].call_count == 1
