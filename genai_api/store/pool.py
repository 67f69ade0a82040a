"""redis-py's blocking connection pool, minus its per-command toll when a connection is free.

`BlockingConnectionPool.get_connection` takes a condition lock, arms an `asyncio.timeout`
(a loop timer), evaluates a predicate, enters a generator-based context manager and
records observability metrics on *every* command, and `release` takes the condition again
to notify waiters. On a cache hit that costs a noticeable share of the GET itself. Most of
the time a pooled connection is free and nobody waits; then this pool hands it out (and
takes it back) directly. Whenever a caller is waiting for a connection, both fall back to
the blocking pool's own path, so waiters keep their order and their wait stays bounded by
the pool's timeout: the pool still never raises past its size (the reason it was chosen).

A connection handed out that way also comes back without `ConnectionPool.release`'s lock,
its re-authentication event (it only acts for a streaming credential provider, which the
gateway never configures; with one, every release takes the full path) and its connection
state metrics, which the fast hand-out skipped too, so the two stay balanced.
"""

from __future__ import annotations

import weakref
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.credentials import StreamingCredentialProvider


class FastBlockingPool(aioredis.BlockingConnectionPool):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fast_out: weakref.WeakSet[AbstractConnection] = weakref.WeakSet()
        credentials = self.connection_kwargs.get("credential_provider")
        self._reauth = isinstance(credentials, StreamingCredentialProvider)

    def reset(self) -> None:
        super().reset()  # type: ignore[no-untyped-call]
        self._fast_out = weakref.WeakSet()  # handed out by the fast path; weak, as in-use is

    def _nobody_waits(self) -> bool:
        waiters = getattr(self._condition, "_waiters", None)
        return not waiters and not getattr(self, "_in_maintenance", False)

    async def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> Any:
        if command_name is not None or keys or options:  # the deprecated signature: as before
            return await super().get_connection(command_name, *keys, **options)  # type: ignore[no-untyped-call]
        if not (self._available_connections and self._nobody_waits()):
            return await super().get_connection()  # type: ignore[no-untyped-call]
        connection = self._available_connections.pop()
        self._in_use_connections.add(connection)
        self._fast_out.add(connection)
        try:
            await self.ensure_connection(connection)
        except BaseException:
            await self.release(connection)
            raise
        return connection

    async def release(self, connection: AbstractConnection) -> None:
        if connection in self._fast_out:
            self._fast_out.discard(connection)
            if (
                self._nobody_waits()
                and not self._reauth
                and not self._lock.locked()
                and not connection.should_reconnect()  # type: ignore[no-untyped-call]
            ):
                self._in_use_connections.remove(connection)
                self._available_connections.append(connection)
                return
        if not self._nobody_waits():
            await super().release(connection)
            return
        await ConnectionPool.release(self, connection)
        if not self._nobody_waits():  # someone began waiting while the release yielded
            async with self._condition:
                self._condition.notify()
