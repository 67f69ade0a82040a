"""A Sentinel-guarded primary: the one-server store on redis-py's `Sentinel.master_for` client.

Why it is the one-server store (`RedisStore`) and not a store of its own: a Sentinel set-up
is one primary at a time, so every script, pipeline and pub/sub of the gateway works on it
unchanged; only how a connection finds the server differs. Each new connection asks the
sentinels which server is the primary (`REDIS_SENTINELS`, `REDIS_SENTINEL_MASTER`), so:

- a primary that dies fails the requests using it (BYPASS, the breaker opens as for one
  server); its connections are gone, and the breaker's probe reconnects through the
  sentinels, which name the promoted replica once they agree it failed;
- a primary demoted to a replica (it came back after a failover) answers writes with
  READONLY: redis-py drops that connection and the next one asks the sentinels again.

The pool blocks briefly when all connections are busy, as the one-server pool does (a
`ConnectionPool` would raise past its size). The sentinels' own connections have a socket
timeout (`REDIS_TIMEOUT`): discovery is not on the hot path, and a hung sentinel must not
hang it; the next sentinel is asked instead.
"""

from __future__ import annotations

import contextlib
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from genai_api.store.redis import RedisStore


class BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """Sentinel discovery on every connect, waiting (up to its timeout) for a free one."""


def sentinel_client(
    options: dict[str, Any],
    *,
    sentinels: list[tuple[str, int]],
    master: str,
    sentinel_password: str | None,
    timeout: float,
    max_connections: int,
) -> tuple[aioredis.Redis, Sentinel]:
    """The primary's client and the `Sentinel` behind it (close both). `options` come from
    `REDIS_URL` or the parts (`redis_options`): their password, database and TLS apply to
    the data connections; their host and port are not used (the sentinels name the primary)."""
    opts = dict(options)
    for unused in ("host", "port", "path"):
        opts.pop(unused, None)
    tls = opts.pop("connection_class", None) is aioredis.SSLConnection  # rediss://
    guard: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if sentinel_password:
        guard["password"] = sentinel_password
    if tls:
        guard["ssl"] = True
    sentinel = Sentinel(sentinels, sentinel_kwargs=guard)
    client = sentinel.master_for(
        master,
        connection_pool_class=BlockingSentinelPool,
        ssl=tls,
        max_connections=max_connections,
        timeout=timeout,  # the blocking pool's wait for a free connection
        socket_timeout=None,  # each operation is bounded by the store (`redis.py` says why)
        socket_connect_timeout=timeout,
        health_check_interval=0,
        retry=Retry(NoBackoff(), 1),
        **opts,
    )
    return client, sentinel


class SentinelStore(RedisStore):
    name = "redis-sentinel"

    def __init__(
        self,
        options: dict[str, Any],
        *,
        sentinels: list[tuple[str, int]],
        master: str,
        sentinel_password: str | None,
        timeout: float,
        max_connections: int,
        breaker_seconds: float,
        breaker_failures: int = 1,
    ) -> None:
        client, self.sentinel = sentinel_client(
            options,
            sentinels=sentinels,
            master=master,
            sentinel_password=sentinel_password,
            timeout=timeout,
            max_connections=max_connections,
        )
        super().__init__(
            None,
            timeout=timeout,
            max_connections=max_connections,
            breaker_seconds=breaker_seconds,
            breaker_failures=breaker_failures,
            client=client,
        )

    async def close(self) -> None:
        await super().close()
        with contextlib.suppress(RedisError, OSError):
            await self.sentinel.aclose()
