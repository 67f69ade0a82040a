"""The L1 in front of Redis, through the HTTP API, on real redis-servers.

Two gateways in one process with their own stores and subscriptions stand for two replicas
sharing a Redis. Every test holds L1 entries for a minute (`CACHE_L1_SECONDS=60`), so what it
shows never depends on an entry's hold running out.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import respx

from genai_api.entry import Entry
from genai_api.store.near import NearStore
from tests.conftest import CHAT, chat_response, make_settings, running, wait_until
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis


def _settings(url: str, namespace: str | None = None, **overrides: Any) -> Any:
    values: dict[str, Any] = {"cache_l1_seconds": 60, **overrides}
    return make_settings(
        cache_backend="redis",
        redis_url=url,
        cache_namespace=namespace or f"t{uuid.uuid4().hex[:12]}",
        **values,
    )


def _l1(gw: Any) -> NearStore:
    store = gw.gateway.store
    assert isinstance(store, NearStore)
    return store


async def _gets(url: str) -> int:
    """GET commands Redis has run so far."""
    client = aioredis.from_url(url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return int(stats.get("cmdstat_get", {}).get("calls", 0))


def _content(answer: httpx.Response) -> str:
    return str(answer.json()["choices"][0]["message"]["content"])


async def _post(gw: Any, **headers: str) -> httpx.Response:
    return await gw.http.post("/v1/chat/completions", json=CHAT, headers=headers)


async def test_a_hot_key_is_answered_without_a_redis_get(
    upstream: respx.MockRouter, redis_server: RedisServer
) -> None:
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    async with running(_settings(redis_server.url)) as gw:
        await wait_until(lambda: _l1(gw).listening)
        miss, first = await _post(gw), await _post(gw)  # the first hit reads Redis
        before = await _gets(redis_server.url)
        hits = [await _post(gw) for _ in range(5)]
        after = await _gets(redis_server.url)
        stats = (await gw.http.get("/v1/cache/stats")).json()
    assert miss.headers["x-cache"] == "MISS" and first.headers["x-cache"] == "HIT"
    assert after == before  # no GET reached Redis
    for hit in hits:  # an ordinary HIT: same headers, same body, counted
        assert hit.headers["x-cache"] == "HIT"
        assert hit.headers["x-cache-key"] == miss.headers["x-cache-key"]
        assert "age" in hit.headers and hit.headers["x-cache-saved-tokens"] == "17"
        assert hit.content == first.content
    assert stats["hits"] == 6
    assert _l1(gw).hits == 5


async def test_out_of_band_changes_are_unseen_for_the_hold_only(
    upstream: respx.MockRouter, redis_server: RedisServer
) -> None:
    """Within CACHE_L1_SECONDS the L1 answers what it read; a redis-cli SET is seen after."""
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    async with running(_settings(redis_server.url, cache_l1_seconds=0.3)) as gw:
        await wait_until(lambda: _l1(gw).listening)
        miss = await _post(gw)
        await _post(gw)
        client = aioredis.from_url(redis_server.url)
        (skey,) = [k async for k in client.scan_iter(f"{gw.gateway.settings.cache_namespace}:e:*")]
        entry = Entry.fresh(chat_response("Changed behind its back"), model="gpt-4o-mini")
        await client.set(skey, entry.encode())
        await client.aclose()
        held = await _post(gw)
        await asyncio.sleep(0.35)
        seen = await _post(gw)
    assert miss.headers["x-cache"] == "MISS"
    assert _content(held) == "Hello there!" and held.headers["x-cache"] == "HIT"
    assert _content(seen) == "Changed behind its back" and seen.headers["x-cache"] == "HIT"


async def test_delete_on_one_replica_clears_the_l1_of_another(
    upstream: respx.MockRouter, redis_server: RedisServer
) -> None:
    route = upstream.post("/chat/completions").mock(
        return_value=httpx.Response(200, json=chat_response())
    )
    settings = _settings(redis_server.url)
    async with running(settings) as a, running(settings) as b:
        await wait_until(lambda: _l1(a).listening and _l1(b).listening)
        assert (await _post(a)).headers["x-cache"] == "MISS"
        assert [(await _post(b)).headers["x-cache"] for _ in range(3)] == ["HIT"] * 3
        assert _l1(b).hits == 2  # b answers from its L1
        epoch = _l1(b).l1.epoch
        deleted = await a.http.request("DELETE", "/v1/cache")
        await wait_until(lambda: _l1(b).l1.epoch != epoch)  # the message reached b
        after = await _post(b)
    assert deleted.json() == {"deleted": 1}
    assert after.headers["x-cache"] == "MISS"
    assert route.call_count == 2


async def test_a_delete_clears_its_own_l1_before_answering(
    upstream: respx.MockRouter, redis_server: RedisServer
) -> None:
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    async with running(_settings(redis_server.url)) as gw:
        await wait_until(lambda: _l1(gw).listening)
        await _post(gw)
        await _post(gw)
        assert len(_l1(gw).l1) == 1
        await gw.http.request("DELETE", "/v1/cache", json={"model": "gpt-4o-mini"})
        after = await _post(gw)  # no wait at all
    assert after.headers["x-cache"] == "MISS"


async def test_a_no_cache_refresh_on_one_replica_is_seen_by_another(
    upstream: respx.MockRouter, redis_server: RedisServer
) -> None:
    upstream.post("/chat/completions").mock(
        side_effect=[
            httpx.Response(200, json=chat_response("first")),
            httpx.Response(200, json=chat_response("refreshed")),
        ]
    )
    settings = _settings(redis_server.url)
    async with running(settings) as a, running(settings) as b:
        await wait_until(lambda: _l1(a).listening and _l1(b).listening)
        await _post(a)
        held = [_content(await _post(b)) for _ in range(2)]
        assert _l1(b).hits == 1
        epoch = _l1(b).l1.epoch
        refresh = await _post(a, **{"Cache-Control": "no-cache"})
        await wait_until(lambda: _l1(b).l1.epoch != epoch)
        seen = await _post(b)
        own = await _post(a)
    assert held == ["first", "first"]
    assert refresh.headers["x-cache"] == "MISS" and _content(refresh) == "refreshed"
    assert seen.headers["x-cache"] == "HIT" and _content(seen) == "refreshed"
    assert own.headers["x-cache"] == "HIT" and _content(own) == "refreshed"


async def test_a_max_age_refresh_stored_by_a_lease_is_seen_by_every_l1(
    upstream: respx.MockRouter, redis_server: RedisServer
) -> None:
    # A max-age refresh replaces the entry through the lease's fill script, not `set`.
    upstream.post("/chat/completions").mock(
        side_effect=[
            httpx.Response(200, json=chat_response("first")),
            httpx.Response(200, json=chat_response("refreshed")),
        ]
    )
    settings = _settings(redis_server.url)
    async with running(settings) as a, running(settings) as b:
        await wait_until(lambda: _l1(a).listening and _l1(b).listening)
        await _post(a)
        held = [_content(await _post(x)) for x in (a, a, b, b)]
        assert _l1(a).hits == 1 and _l1(b).hits == 1
        await asyncio.sleep(1.1)  # ages are whole seconds: the entry is now older than 0 s
        epochs = _l1(a).l1.epoch, _l1(b).l1.epoch
        refresh = await _post(a, **{"Cache-Control": "max-age=0"})
        await wait_until(lambda: _l1(a).l1.epoch != epochs[0] and _l1(b).l1.epoch != epochs[1])
        seen, own = await _post(b), await _post(a)
    assert held == ["first"] * 4
    assert refresh.headers["x-cache"] == "MISS" and _content(refresh) == "refreshed"
    assert seen.headers["x-cache"] == "HIT" and _content(seen) == "refreshed"
    assert own.headers["x-cache"] == "HIT" and _content(own) == "refreshed"


async def test_redis_stopped_is_bypass_not_an_l1_hit_and_a_restart_starts_afresh(
    upstream: respx.MockRouter, redis_server: RedisServer
) -> None:
    route = upstream.post("/chat/completions").mock(
        return_value=httpx.Response(200, json=chat_response())
    )
    settings = _settings(redis_server.url, redis_breaker_seconds=0.2)
    async with running(settings) as gw:
        store = _l1(gw)
        await wait_until(lambda: store.listening)
        await _post(gw)
        await _post(gw)
        assert (await _post(gw)).headers["x-cache"] == "HIT" and store.hits == 1

        redis_server.stop()
        await wait_until(lambda: not store.listening)  # this process has seen Redis go
        down = [await _post(gw) for _ in range(3)]
        assert {a.headers["x-cache"] for a in down} == {"BYPASS"}
        assert store.hits == 1 and len(store.l1) == 0  # it may have missed news: dropped

        redis_server.start()  # empty: the entry the L1 held is gone
        await wait_until(lambda: store.listening)
        assert len(store.l1) == 0  # subscribed again: it starts afresh
        for _ in range(50):  # the breaker's cool-down; a pooled connection may be stale once
            if (await gw.http.get("/readyz")).status_code == 200:
                break
            await asyncio.sleep(0.1)
        assert not store.breaker.is_open
        again = await _post(gw)
    assert again.headers["x-cache"] == "MISS"
    assert route.call_count == 1 + 3 + 1


async def test_an_open_breaker_clears_the_l1(
    upstream: respx.MockRouter, redis_server: RedisServer
) -> None:
    """A hung Redis trips the breaker: the L1 answers nothing, and drops what it held."""
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    async with running(_settings(redis_server.url, redis_breaker_seconds=30)) as gw:
        store = _l1(gw)
        await wait_until(lambda: store.listening)
        await _post(gw)
        await _post(gw)
        assert len(store.l1) == 1
        store.breaker.trip()
        answer = await _post(gw)
    assert answer.headers["x-cache"] == "BYPASS"
    assert len(store.l1) == 0 and store.hits == 0


async def test_no_l1_without_a_confirmed_subscription(
    upstream: respx.MockRouter, redis_server: RedisServer
) -> None:
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    async with running(_settings(redis_server.url)) as gw:
        store = _l1(gw)
        await wait_until(lambda: store.listening)
        await store.stop()  # stands for a subscription that is down; Redis itself answers
        await _post(gw)
        client = aioredis.from_url(redis_server.url)
        (skey,) = [k async for k in client.scan_iter(f"{gw.gateway.settings.cache_namespace}:e:*")]
        await client.aclose()
        store.l1.put(skey.decode(), b"not an entry", store.l1.epoch)  # held from before
        answers = [(await _post(gw)).headers["x-cache"] for _ in range(3)]
    assert answers == ["HIT"] * 3  # from Redis, not the L1's copy (that would be a MISS)
    assert store.hits == 0


async def test_l1_disabled_reads_redis_every_time(
    upstream: respx.MockRouter, redis_server: RedisServer
) -> None:
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    async with running(_settings(redis_server.url, cache_l1_max_bytes=0)) as gw:
        assert not isinstance(gw.gateway.store, NearStore)
        await _post(gw)
        before = await _gets(redis_server.url)
        for _ in range(3):
            assert (await _post(gw)).headers["x-cache"] == "HIT"
        after = await _gets(redis_server.url)
    assert after - before == 3
