"""Redis store on aiocache's `RedisCache`, with a blocking pool, short timeouts and a breaker.

Why these choices: aiocache's default pool raises past its size under load (a blocking pool
waits briefly instead). Each operation is bounded by one `asyncio.timeout` around the whole
call, not by aiocache's per-op `asyncio.wait_for` nor by redis-py's `socket_timeout`: both
of those wrap every command in `asyncio.wait_for`, which on Python 3.11 creates a task per
command, and on a cache hit that costs more CPU than the GET itself. Operations go to the
raw redis-py client (aiocache's decorator stack is as costly again). Every failure trips a
breaker so a dead or hung Redis costs one timeout per cool-down, not one per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis
from aiocache import RedisCache
from redis.asyncio.connection import parse_url
from redis.exceptions import RedisError

from genai_api.errors import CacheUnavailable
from genai_api.store.base import BytesSerializer
from genai_api.store.breaker import CircuitBreaker
from genai_api.store.tls import shared_context_ssl_connection

T = TypeVar("T")
_FAILURES = (RedisError, OSError, asyncio.TimeoutError)


def redis_options(
    url: str | None,
    *,
    host: str,
    port: int,
    password: str | None,
    db: int,
) -> dict[str, Any]:
    """Connection options from `REDIS_URL` (which wins) or the separate parts."""
    if url:
        opts: dict[str, Any] = dict(parse_url(url))
        opts.setdefault("host", "localhost")
        opts.setdefault("port", 6379)
        opts.setdefault("db", 0)
        return opts
    return {"host": host, "port": port, "password": password, "db": db}


class RedisStore:
    name = "redis"

    def __init__(
        self,
        options: dict[str, Any],
        *,
        timeout: float,
        max_connections: int,
        breaker_seconds: float,
    ) -> None:
        opts = dict(options)
        host, port, db = opts.pop("host"), int(opts.pop("port")), int(opts.pop("db", 0))
        password = opts.pop("password", None)
        if opts.pop("connection_class", None) is aioredis.SSLConnection:  # rediss://
            opts["connection_class"] = shared_context_ssl_connection()
        opts.update(timeout=timeout, health_check_interval=0)  # no socket_timeout: see above
        self._cache = RedisCache(
            serializer=BytesSerializer(),
            endpoint=host,
            port=port,
            db=db,
            password=password,
            ssl=False,  # TLS comes with the connection class above
            pool_max_size=max_connections,
            create_connection_timeout=timeout,
            connection_pool_class=aioredis.BlockingConnectionPool,
            connection_pool_kwargs=opts,
            timeout=None,
        )
        self.client: aioredis.Redis = self._cache.client
        self.breaker = CircuitBreaker(breaker_seconds)
        self.timeout = timeout

    async def _call(
        self, op: Callable[[], Awaitable[T]], *, entries: int = 1, bounded: bool = True
    ) -> T:
        """`op()` behind the breaker, within its deadline unless it bounds each step itself."""
        if self.breaker.is_open:
            raise CacheUnavailable("redis circuit open")
        try:
            if not bounded:
                return await op()
            async with asyncio.timeout(self.deadline(entries)):
                return await op()
        except _FAILURES as exc:
            self.breaker.trip()
            raise CacheUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    def deadline(self, entries: int) -> float:
        """REDIS_TIMEOUT for one entry; a batch gets one more per 256 entries it moves, so a
        5,000-vector write is not taken for a hung Redis (the bytes take time to travel)."""
        return self.timeout * (1 + entries // 256)

    async def guarded(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run a raw-client operation (`op` uses `self.client`) behind the breaker.

        For other Redis users of the same pool, such as the leases: a failure trips the
        breaker and raises `CacheUnavailable`, exactly as the store's own operations do.
        """
        return await self._call(op)

    async def get(self, key: str) -> bytes | None:
        # The raw client, not aiocache's `get`: its decorator stack (plugins, timeout,
        # enabled check, key building) costs as much CPU as the GET itself on a hit.
        value = await self._call(lambda: self.client.get(key))
        return cast(bytes | None, value)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        values = await self._call(lambda: self.client.mget(list(keys)), entries=len(keys))
        return cast(list[bytes | None], values)

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self._call(lambda: self.client.set(key, value, px=max(1, int(ttl * 1000))))

    async def set_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        if not items:
            return

        async def write() -> None:
            async with self.client.pipeline(transaction=False) as pipe:
                for key, value, ttl in items:
                    pipe.set(key, value, px=max(1, int(ttl * 1000)))
                await pipe.execute()

        await self._call(write, entries=len(items))

    async def delete_matching(self, pattern: str) -> int:
        """SCAN in pages and UNLINK each page: never KEYS, never FLUSHDB, never blocking."""

        async def run() -> int:
            deleted, cursor = 0, 0
            while True:
                # Each round trip has its own deadline; the whole walk may take long.
                async with asyncio.timeout(self.timeout):
                    cursor, keys = await self.client.scan(cursor, match=pattern, count=1000)
                if keys:
                    async with asyncio.timeout(self.timeout):
                        deleted += int(await self.client.unlink(*keys))
                if not cursor:
                    return deleted

        return await self._call(run, bounded=False)

    async def ping(self) -> bool:
        """True when Redis answers now; a success also closes the breaker early."""
        try:
            # The probe usually opens a connection: one REDIS_TIMEOUT to connect, one to answer.
            async with asyncio.timeout(2 * self.timeout):
                ok = bool(await self.client.ping())
        except _FAILURES:
            self.breaker.trip()
            return False
        if ok:
            self.breaker.reset()
        return ok

    async def close(self) -> None:
        await self.client.aclose()
        await self.client.connection_pool.disconnect()
