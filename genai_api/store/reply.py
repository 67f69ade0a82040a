"""A command written to one Redis server whose reply is read later (`RedisStore.send`).

Why: a miss's store need not hold up the client's answer; once the command has left this
process, anything the client does after seeing the answer reaches Redis after it. `Reply`
keeps the pooled connection until its reply is read (`read`, exactly once).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError

from genai_api.errors import CacheUnavailable, WriteRefused
from genai_api.store.breaker import CircuitBreaker
from genai_api.store.refusals import refused

_FAILURES = (RedisError, OSError, asyncio.TimeoutError)


class Sender(Protocol):
    """What a reply needs of the store that sent it."""

    timeout: float
    client: Any
    breaker: CircuitBreaker

    def refuse(self, exc: BaseException) -> WriteRefused: ...


class ReplyLost(CacheUnavailable):
    """A sent command's connection closed before its reply came: whether Redis ran it is
    unknown. Not counted for the breaker: sending it again (through the client, which
    retries on a new connection) tells whether Redis is really gone."""


class Reply:
    """A command `RedisStore.send` wrote, its reply not read yet. `read` it exactly once: that
    gives its connection back to the pool (disconnected when the read failed or was
    cancelled, as redis-py does, since what is left on it is unknown)."""

    def __init__(self, store: Sender, connection: Any, started: float) -> None:
        self._store = store
        self._connection = connection
        self._started = started  # sent at (the breaker's clock)

    @property
    def left(self) -> bool:
        """Every byte of the command has left this process (none waits in the transport's
        buffer for the socket to drain)."""
        writer = getattr(self._connection, "_writer", None)
        transport = getattr(writer, "transport", None)
        return transport is not None and transport.get_write_buffer_size() == 0

    async def read(self) -> Any:
        """The reply, within `REDIS_TIMEOUT`; a failure counts for the breaker and raises
        `CacheUnavailable`, except two the caller can mend by sending the command again:
        `NoScriptError` (Redis answered; load the script first) and `ReplyLost` (the
        connection turned out closed, as a pooled one does after a Redis restart); and one
        that is no failure at all: `WriteRefused` (Redis is full; `refusals.py`)."""
        store, connection = self._store, self._connection
        try:
            try:
                async with asyncio.timeout(store.timeout):
                    reply = await connection.read_response()
            finally:
                await store.client.connection_pool.release(connection)
        except NoScriptError:
            store.breaker.success()
            raise
        except RedisConnectionError as exc:
            raise ReplyLost(f"redis: {type(exc).__name__}: {exc}") from exc
        except _FAILURES as exc:
            if refused(exc):
                store.breaker.success()
                raise store.refuse(exc) from exc
            store.breaker.failure(self._started)
            raise CacheUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
        store.breaker.success()
        return reply
