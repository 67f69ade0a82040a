"""A miss is answered once Redis has its fill, not once Redis replied to it, on a real
redis-server through the HTTP API.

The fill (store + release + wake-up, one script) is written to Redis before the answer goes
out; its reply is read by a background task. The tests hold that reply back (`held_replies`)
to show what a client sees meanwhile, and make it fail to show that nothing is lost.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis
import respx

from genai_api.errors import CacheUnavailable
from genai_api.store.near import NearStore
from genai_api.store.redis import RedisStore, Reply
from tests.conftest import CHAT, chat_response, make_settings, running, wait_until
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis

PATH = "/v1/chat/completions"


def _settings(url: str) -> Any:
    return make_settings(
        cache_backend="redis", redis_url=url, cache_namespace=f"t{uuid.uuid4().hex[:12]}"
    )


def _redis(gw: Any) -> RedisStore:
    store = gw.gateway.store
    return store.redis if isinstance(store, NearStore) else store


def _checked_out(store: RedisStore) -> int:
    pool: Any = store.client.connection_pool
    return len(pool._in_use_connections) + len(pool._fast_out)


async def _settled(gw: Any) -> int:
    """Connections checked out for good (the subscriptions), once they are up."""
    near = gw.gateway.store
    await wait_until(
        lambda: (
            gw.gateway.pipeline.leases.notifier.subscribed
            and (not isinstance(near, NearStore) or near.listening)
        )
    )
    return _checked_out(_redis(gw))


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_server.url)
    yield client
    await client.aclose()


class HeldReplies:
    """`Reply.read` waits for `release` before reading; `reads` counts the replies read."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.release = asyncio.Event()
        self.reads = 0
        real = Reply.read

        async def held(reply: Reply) -> Any:
            await self.release.wait()
            answer = await real(reply)
            self.reads += 1
            return answer

        monkeypatch.setattr(Reply, "read", held)


async def test_the_answer_does_not_wait_for_the_fill_reply_yet_follows_the_fill(
    upstream: respx.MockRouter,
    redis_server: RedisServer,
    raw: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    held = HeldReplies(monkeypatch)
    settings = _settings(redis_server.url)
    ns = settings.cache_namespace
    async with running(settings) as gw:
        subscriptions = await _settled(gw)
        miss = await asyncio.wait_for(gw.http.post(PATH, json=CHAT), 5)
        # Answered with the reply still unread, and Redis already ran the fill.
        assert held.reads == 0
        assert [k async for k in raw.scan_iter(f"{ns}:e:*")] != []
        assert [k async for k in raw.scan_iter(f"{ns}:lock:*")] == []
        held.release.set()
        await wait_until(lambda: held.reads == 1)
        hit = await gw.http.post(PATH, json=CHAT)
        await wait_until(lambda: _checked_out(_redis(gw)) == subscriptions)
        stats = (await gw.http.get("/v1/cache/stats")).json()
    assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")
    assert miss.json() == hit.json()
    assert stats["errors"] == 0
    assert upstream.routes[0].call_count == 1


async def test_a_delete_right_after_the_answer_is_not_undone_by_the_fill(
    upstream: respx.MockRouter,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    held = HeldReplies(monkeypatch)
    async with running(_settings(redis_server.url)) as gw:
        first = await gw.http.post(PATH, json=CHAT)
        deleted = await gw.http.request("DELETE", "/v1/cache")
        held.release.set()
        await wait_until(lambda: held.reads == 1)
        again = await gw.http.post(PATH, json=CHAT)
    assert deleted.json() == {"deleted": 1}
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("MISS", "MISS")
    assert upstream.routes[0].call_count == 2


async def test_a_fill_reply_that_fails_counts_an_error_and_releases_the_lease(
    upstream: respx.MockRouter,
    redis_server: RedisServer,
    raw: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fill never ran (a PING went instead) and its reply is lost: the answer is still the
    provider's, the failure is counted, and the lease is given back at once, not left to
    expire under the next request."""
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    settings = _settings(redis_server.url)
    ns = settings.cache_namespace
    real_send = RedisStore.send
    real_read = Reply.read

    async def send_nothing(store: RedisStore, *command: Any, key: str = "") -> Reply:
        return await real_send(store, "PING")

    async def lost(reply: Reply) -> Any:
        await real_read(reply)
        raise CacheUnavailable("redis: ConnectionError: gone")

    async with running(settings) as gw:
        subscriptions = await _settled(gw)
        monkeypatch.setattr(RedisStore, "send", send_nothing)
        monkeypatch.setattr(Reply, "read", lost)
        answered = await gw.http.post(PATH, json=CHAT)
        await wait_until(lambda: not gw.gateway.pipeline.leases._landing)
        await wait_until(lambda: _checked_out(_redis(gw)) == subscriptions)
        locks = [k async for k in raw.scan_iter(f"{ns}:lock:*")]
        entries = [k async for k in raw.scan_iter(f"{ns}:e:*")]
        monkeypatch.undo()
        await gw.gateway.accounting.flush()
        stats = (await gw.http.get("/v1/cache/stats")).json()
        again = await gw.http.post(PATH, json=CHAT)
    assert answered.status_code == 200
    assert answered.headers["x-cache"] == "MISS"
    assert answered.json()["choices"][0]["message"]["content"] == "Hello there!"
    assert locks == [] and entries == []
    assert stats["errors"] == 1
    assert again.headers["x-cache"] == "MISS"  # nothing was stored, and nothing waits


async def test_a_redis_that_lost_its_scripts_still_stores_the_answer(
    upstream: respx.MockRouter, redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    async with running(_settings(redis_server.url)) as gw:
        await gw.http.post("/v1/chat/completions", json={**CHAT, "seed": 1})  # scripts loaded
        await raw.script_flush()
        miss = await gw.http.post(PATH, json=CHAT)
        await wait_until(lambda: not gw.gateway.pipeline.leases._landing)
        hit = await gw.http.post(PATH, json=CHAT)
        stats = (await gw.http.get("/v1/cache/stats")).json()
    assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")
    assert stats["errors"] == 0


async def test_shutdown_sees_a_fill_reply_through(
    upstream: respx.MockRouter,
    redis_server: RedisServer,
    raw: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    held = HeldReplies(monkeypatch)
    answered, stopped = asyncio.Event(), asyncio.Event()

    async def serve_one() -> None:
        async with running(_settings(redis_server.url)) as gw:
            await gw.http.post(PATH, json=CHAT)
            answered.set()
        stopped.set()

    server = asyncio.create_task(serve_one())
    await asyncio.wait_for(answered.wait(), 5)
    await asyncio.sleep(0.2)
    assert not stopped.is_set()  # shutdown waits for the reply
    held.release.set()
    await asyncio.wait_for(server, 5)
    assert held.reads == 1


async def test_a_fill_on_a_connection_redis_closed_is_sent_again(
    upstream: respx.MockRouter, redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    """A pooled connection Redis has closed (a restart, a `CLIENT KILL`, its idle timeout)
    takes a fill's write without a murmur and fails its read: the fill is sent again on a
    new connection, as redis-py's retry does for the other commands."""
    killer = redis.Redis.from_url(redis_server.url)

    def answer_after_killing_every_connection(request: httpx.Request) -> httpx.Response:
        killer.client_kill_filter(_type="normal", skipme=True)  # between claim and fill
        return httpx.Response(200, json=chat_response())

    upstream.post("/chat/completions").mock(side_effect=answer_after_killing_every_connection)
    try:
        async with running(_settings(redis_server.url)) as gw:
            await _settled(gw)
            miss = await gw.http.post(PATH, json=CHAT)
            await wait_until(lambda: not gw.gateway.pipeline.leases._landing)
            hit = await gw.http.post(PATH, json=CHAT)
            await gw.gateway.accounting.flush()
            stats = (await gw.http.get("/v1/cache/stats")).json()
    finally:
        killer.close()
    assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")
    assert stats["errors"] == 0


async def test_requests_after_redis_closed_the_pooled_connections_still_use_the_cache(
    upstream: respx.MockRouter, redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    """Without a retry, each stale connection of the pool failed one request (BYPASS)."""
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    bodies = [{**CHAT, "seed": n} for n in range(8)]
    async with running(_settings(redis_server.url)) as gw:
        await _settled(gw)
        await raw.client_kill_filter(_type="normal", skipme=True)
        misses = await asyncio.gather(*(gw.http.post(PATH, json=b) for b in bodies))
        await wait_until(lambda: not gw.gateway.pipeline.leases._landing)
        hits = await asyncio.gather(*(gw.http.post(PATH, json=b) for b in bodies))
        await gw.gateway.accounting.flush()
        stats = (await gw.http.get("/v1/cache/stats")).json()
    assert {a.headers["x-cache"] for a in misses} == {"MISS"}
    assert {a.headers["x-cache"] for a in hits} == {"HIT"}
    assert stats["errors"] == 0


async def test_a_fill_not_all_written_is_waited_for_before_the_answer(
    upstream: respx.MockRouter, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Part of the command still in this process's buffer (a large entry on a busy socket)
    is not yet Redis's: the answer waits for the reply, as it did before."""
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    held = HeldReplies(monkeypatch)
    monkeypatch.setattr(Reply, "left", property(lambda reply: False))
    async with running(_settings(redis_server.url)) as gw:
        request = asyncio.create_task(gw.http.post(PATH, json=CHAT))
        await asyncio.sleep(0.2)
        assert not request.done()
        held.release.set()
        miss = await asyncio.wait_for(request, 5)
        assert held.reads == 1
        hit = await gw.http.post(PATH, json=CHAT)
    assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")
