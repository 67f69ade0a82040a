"""The cache on a real redis-server: entry shape, TTLs, outages, recovery, invalidation."""

from __future__ import annotations

import asyncio
import json
import signal

import httpx
import pytest
import redis.asyncio as aioredis
import respx

from tests.conftest import CHAT, chat_response, make_settings, running, until_hit
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis


def _ok() -> httpx.Response:
    return httpx.Response(200, json=chat_response())


async def _keys(url: str, namespace: str) -> list[str]:
    """The cache entries of `namespace` (its `:stats:` counters live beside them)."""
    client = aioredis.from_url(url)
    try:
        return sorted([k.decode() async for k in client.scan_iter(match=f"{namespace}:e:*")])
    finally:
        await client.aclose()


async def test_hit_from_redis_with_entry_shape(upstream: respx.MockRouter, redis_url: str) -> None:
    route = upstream.post("/chat/completions").mock(return_value=_ok())
    settings = make_settings(cache_backend="redis", redis_url=redis_url)
    async with running(settings) as gw:
        first = await gw.http.post("/v1/chat/completions", json=CHAT)
        second = await gw.http.post("/v1/chat/completions", json=CHAT)
    assert route.call_count == 1
    assert second.headers["x-cache"] == "HIT"
    assert first.content == second.content
    keys = await _keys(redis_url, settings.cache_namespace)
    assert len(keys) == 1
    assert keys[0].endswith(first.headers["x-cache-key"])
    assert ":chat:" in keys[0] and ":gpt-4o-mini:" in keys[0]
    client = aioredis.from_url(redis_url)
    entry = json.loads(await client.get(keys[0]))
    ttl_ms = await client.pttl(keys[0])
    await client.aclose()
    assert entry["v"] == 1
    assert entry["usage"]["total_tokens"] == 17
    assert entry["response"] == first.json()
    assert entry["stored_at"] > 1_700_000_000
    # default TTL 3600 s with ±10 % jitter
    assert 3240_000 - 5000 <= ttl_ms <= 3960_000


async def test_requested_ttl_is_set_exactly_and_capped(
    upstream: respx.MockRouter, redis_url: str
) -> None:
    upstream.post("/chat/completions").mock(return_value=_ok())
    settings = make_settings(
        cache_backend="redis", redis_url=redis_url, cache_default_ttl=300, cache_max_ttl=500
    )
    async with running(settings) as gw:
        await gw.http.post("/v1/chat/completions", json=CHAT, headers={"X-Cache-TTL": "120"})
        await gw.http.post(
            "/v1/chat/completions", json={**CHAT, "seed": 1}, headers={"X-Cache-TTL": "99999"}
        )
    client = aioredis.from_url(redis_url)
    ttls = sorted([await client.ttl(k) for k in await _keys(redis_url, settings.cache_namespace)])
    await client.aclose()
    assert 118 <= ttls[0] <= 120
    assert 498 <= ttls[1] <= 500


async def test_model_ttl_from_models_file(
    upstream: respx.MockRouter, redis_url: str, tmp_path: pytest.TempPathFactory
) -> None:
    upstream.post("/chat/completions").mock(return_value=_ok())
    models = tmp_path / "models.yaml"  # type: ignore[operator]
    models.write_text("models:\n  gpt-4o-mini:\n    ttl: 1000\n")
    settings = make_settings(cache_backend="redis", redis_url=redis_url, models_file=models)
    async with running(settings) as gw:
        await gw.http.post("/v1/chat/completions", json=CHAT)
    client = aioredis.from_url(redis_url)
    (key,) = await _keys(redis_url, settings.cache_namespace)
    ttl = await client.ttl(key)
    await client.aclose()
    assert 900 - 2 <= ttl <= 1100


async def test_entry_expires_after_its_ttl(upstream: respx.MockRouter, redis_url: str) -> None:
    route = upstream.post("/chat/completions").mock(return_value=_ok())
    settings = make_settings(cache_backend="redis", redis_url=redis_url)
    async with running(settings) as gw:
        await gw.http.post("/v1/chat/completions", json=CHAT, headers={"X-Cache-TTL": "1"})
        hit = await gw.http.post("/v1/chat/completions", json=CHAT)
        await asyncio.sleep(1.2)
        expired = await gw.http.post("/v1/chat/completions", json=CHAT)
    assert hit.headers["x-cache"] == "HIT"
    assert expired.headers["x-cache"] == "MISS"
    assert route.call_count == 2


async def test_concurrent_misses_coalesce_on_redis(
    upstream: respx.MockRouter, redis_url: str
) -> None:
    release, started = asyncio.Event(), asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        started.set()
        await release.wait()
        return _ok()

    route = upstream.post("/chat/completions").mock(side_effect=slow)
    async with running(make_settings(cache_backend="redis", redis_url=redis_url)) as gw:
        tasks = [
            asyncio.create_task(gw.http.post("/v1/chat/completions", json=CHAT)) for _ in range(50)
        ]
        await asyncio.wait_for(started.wait(), 5)
        await asyncio.sleep(0.1)
        release.set()
        answers = await asyncio.gather(*tasks)
    assert route.call_count == 1
    assert all(a.status_code == 200 for a in answers)


async def test_redis_down_bypasses_then_recovers(
    upstream: respx.MockRouter, redis_server: RedisServer
) -> None:
    route = upstream.post("/chat/completions").mock(return_value=_ok())
    # Redis alone: with the L1 (on by default) a request in the moment between the kill and
    # this process noticing it is an L1 HIT; tests/test_l1.py covers that case.
    settings = make_settings(
        cache_backend="redis",
        redis_url=redis_server.url,
        redis_breaker_seconds=0.2,
        cache_l1_max_bytes=0,
    )
    async with running(settings) as gw:
        await gw.http.post("/v1/chat/completions", json=CHAT)
        assert (await gw.http.post("/v1/chat/completions", json=CHAT)).headers["x-cache"] == "HIT"
        assert (await gw.http.get("/readyz")).status_code == 200

        redis_server.stop()
        down = [await gw.http.post("/v1/chat/completions", json=CHAT) for _ in range(3)]
        assert [a.status_code for a in down] == [200, 200, 200]
        assert {a.headers["x-cache"] for a in down} == {"BYPASS"}
        assert down[0].json()["choices"][0]["message"]["content"] == "Hello there!"
        ready = await gw.http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "cache_unavailable"

        redis_server.start()
        await asyncio.sleep(0.3)  # let the breaker's cool-down pass
        assert (await gw.http.get("/readyz")).status_code == 200
        refill = await gw.http.post("/v1/chat/completions", json=CHAT)
        again = await until_hit(gw, CHAT)  # the refill's store may still be under way
        stats = (await gw.http.get("/v1/cache/stats")).json()
    assert refill.headers["x-cache"] == "MISS"  # the restarted Redis kept nothing
    assert again.headers["x-cache"] == "HIT"
    assert route.call_count == 1 + 3 + 1
    assert stats["errors"] >= 1


async def test_app_starts_while_redis_is_down(upstream: respx.MockRouter) -> None:
    upstream.post("/chat/completions").mock(return_value=_ok())
    from tests.redis_server import free_port

    settings = make_settings(cache_backend="redis", redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with running(settings) as gw:
        answer = await gw.http.post("/v1/chat/completions", json=CHAT)
        ready = await gw.http.get("/readyz")
    assert answer.status_code == 200
    assert answer.headers["x-cache"] == "BYPASS"
    assert ready.status_code == 503


async def test_password_protected_redis(
    upstream: respx.MockRouter, tmp_path: pytest.TempPathFactory
) -> None:
    import shutil

    if not shutil.which("redis-server"):
        pytest.skip("needs the redis-server binary to start a password-protected server")
    upstream.post("/chat/completions").mock(return_value=_ok())
    server = RedisServer(tmp_path, password="s3cret pass").start()  # type: ignore[arg-type]
    try:
        good = make_settings(
            cache_backend="redis",
            redis_host="127.0.0.1",
            redis_port=server.port,
            redis_password="s3cret pass",
            redis_db=2,
        )
        async with running(good) as gw:
            await gw.http.post("/v1/chat/completions", json=CHAT)
            hit = await gw.http.post("/v1/chat/completions", json=CHAT)
            assert (await gw.http.get("/readyz")).status_code == 200
        wrong = make_settings(
            cache_backend="redis", redis_url=f"redis://:nope@127.0.0.1:{server.port}/2"
        )
        async with running(wrong) as gw:
            bypass = await gw.http.post("/v1/chat/completions", json=CHAT)
    finally:
        server.stop()
    assert hit.headers["x-cache"] == "HIT"
    assert bypass.status_code == 200 and bypass.headers["x-cache"] == "BYPASS"


async def test_delete_by_model_only_removes_that_model(
    upstream: respx.MockRouter, redis_url: str
) -> None:
    upstream.post("/chat/completions").mock(return_value=_ok())
    settings = make_settings(cache_backend="redis", redis_url=redis_url)
    async with running(settings) as gw:
        await gw.http.post("/v1/chat/completions", json=CHAT)
        await gw.http.post("/v1/chat/completions", json={**CHAT, "model": "gpt-4o"})
        deleted = await gw.http.request("DELETE", "/v1/cache", json={"model": "gpt-4o"})
        kept = await gw.http.post("/v1/chat/completions", json=CHAT)
        gone = await gw.http.post("/v1/chat/completions", json={**CHAT, "model": "gpt-4o"})
        everything = await gw.http.request("DELETE", "/v1/cache")
    assert deleted.json() == {"deleted": 1}
    assert kept.headers["x-cache"] == "HIT"
    assert gone.headers["x-cache"] == "MISS"
    assert everything.json() == {"deleted": 2}
    assert await _keys(redis_url, settings.cache_namespace) == []


async def test_hung_redis_costs_one_timeout_then_bypasses(
    upstream: respx.MockRouter, redis_server: RedisServer
) -> None:
    """A Redis that accepts bytes but never answers (SIGSTOP) is bounded by REDIS_TIMEOUT."""
    upstream.post("/chat/completions").mock(return_value=_ok())
    settings = make_settings(
        cache_backend="redis",
        redis_url=redis_server.url,
        redis_timeout=0.2,
        redis_breaker_seconds=30,
    )
    async with running(settings) as gw:
        await gw.http.post("/v1/chat/completions", json=CHAT)
        assert redis_server.proc is not None
        redis_server.proc.send_signal(signal.SIGSTOP)
        try:
            async with asyncio.timeout(5):  # without a per-operation bound this would hang
                hung = await gw.http.post("/v1/chat/completions", json=CHAT)
                after = await gw.http.post("/v1/chat/completions", json=CHAT)
        finally:
            redis_server.proc.send_signal(signal.SIGCONT)
    assert (hung.status_code, hung.headers["x-cache"]) == (200, "BYPASS")
    assert (after.status_code, after.headers["x-cache"]) == (200, "BYPASS")


def test_store_connections_leave_timeouts_to_the_per_operation_deadline() -> None:
    """redis-py 8 defaults `socket_timeout` to 5 s, which wraps every command sent in an
    `asyncio.wait_for` (a task each) and every reply in a timeout: more CPU than a cache hit's
    GET. The store bounds each operation once instead (see the hung-Redis test above)."""
    from genai_api.store.redis import RedisStore, redis_options

    options = redis_options("redis://127.0.0.1:1/0", host="", port=0, password=None, db=0)
    store = RedisStore(options, timeout=0.2, max_connections=4, breaker_seconds=1)
    kwargs = store.client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] is None
    assert kwargs["socket_connect_timeout"] == 0.2
