"""The store's connection pool: free connections without the blocking pool's toll, and still
never more connections than its size, nor a waiter left behind (real redis-server)."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import ConnectionPool, parse_url

from genai_api.store.pool import FastBlockingPool

pytestmark = pytest.mark.redis


def _client(url: str, size: int, timeout: float = 5.0) -> aioredis.Redis:
    pool = FastBlockingPool(max_connections=size, timeout=timeout, **parse_url(url))
    return aioredis.Redis(connection_pool=pool)


async def test_a_free_connection_skips_the_blocking_path(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = _client(redis_url, 4)
    blocking: list[str] = []
    get, release = (
        aioredis.BlockingConnectionPool.get_connection,
        aioredis.BlockingConnectionPool.release,
    )

    async def counted_get(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        blocking.append("get")
        return await get(self, *args, **kwargs)

    async def counted_release(self, connection):  # type: ignore[no-untyped-def]
        blocking.append("release")
        return await release(self, connection)

    monkeypatch.setattr(aioredis.BlockingConnectionPool, "get_connection", counted_get)
    monkeypatch.setattr(aioredis.BlockingConnectionPool, "release", counted_release)
    try:
        await client.set("pool:k", b"v")  # the first command makes the connection: blocking path
        first = list(blocking)
        for _ in range(10):
            assert await client.get("pool:k") == b"v"
        assert first == ["get"]
        assert blocking == first  # ten more round trips, none through the blocking pool
    finally:
        await client.aclose()


async def test_contention_waits_never_exceeds_the_size_and_loses_nobody(redis_url: str) -> None:
    size = 3
    client = _client(redis_url, size)
    pool = client.connection_pool
    most = 0

    async def one(i: int) -> bytes:
        nonlocal most
        # A slow command (a 20 ms blocking pop that times out) holds its connection a while.
        await client.blpop([f"pool:empty:{i}"], timeout=0.02)
        most = max(most, len(pool._in_use_connections))
        await client.set(f"pool:{i}", str(i))
        value = await client.get(f"pool:{i}")
        most = max(most, len(pool._in_use_connections))
        return bytes(value)

    try:
        results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(40))), 30)
        assert results == [str(i).encode() for i in range(40)]
        assert most <= size
        assert len(pool._available_connections) + len(pool._in_use_connections) <= size
        assert not pool._in_use_connections
    finally:
        await client.aclose()


async def test_a_waiter_is_woken_by_a_direct_release(redis_url: str) -> None:
    client = _client(redis_url, 1, timeout=2.0)
    pool = client.connection_pool
    try:
        held = await pool.get_connection()
        waiter = asyncio.create_task(client.get("pool:none"))
        await asyncio.sleep(0.05)
        assert not waiter.done()  # blocked: the only connection is held
        await pool.release(held)
        assert await asyncio.wait_for(waiter, 1.0) is None
    finally:
        await client.aclose()


async def test_a_connection_handed_out_fast_comes_back_without_the_pools_release(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No lock, no re-auth event, no metrics on the way back either: the fast hand-out
    skipped them too. The connection is reused, and the pool's books balance."""
    client = _client(redis_url, 4)
    pool = client.connection_pool
    full: list[int] = []
    release = ConnectionPool.release

    async def counted(self, connection):  # type: ignore[no-untyped-def]
        full.append(1)
        return await release(self, connection)

    monkeypatch.setattr(ConnectionPool, "release", counted)
    try:
        await client.set("pool:k", b"v")  # made by the blocking path: released by it too
        assert len(full) == 1
        for _ in range(10):
            assert await client.get("pool:k") == b"v"
        assert len(full) == 1
        assert len(pool._available_connections) == 1 and len(pool._in_use_connections) == 0
    finally:
        await client.aclose()
