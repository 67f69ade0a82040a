"""Redis store on aiocache's `RedisCache`, with a blocking pool, short timeouts and a breaker.

Why these choices: aiocache's default pool raises past its size under load (a blocking pool
waits briefly instead; `pool.py` makes it cheap while a connection is free). Each operation
is bounded by one `asyncio.timeout` around the whole
call, not by aiocache's per-op `asyncio.wait_for` nor by redis-py's `socket_timeout`: both
of those wrap every command in `asyncio.wait_for`, which on Python 3.11 creates a task per
command, and on a cache hit that costs more CPU than the GET itself. Operations go to the
raw redis-py client (aiocache's decorator stack is as costly again).

A sick Redis costs a request at most one timeout: a failure spends the request's budget
(`budget.py`), so its later operations skip Redis; `REDIS_BREAKER_FAILURES` consecutive
failures open the breaker, and then requests skip Redis at once while a background probe
(one per cool-down) finds out when it is back. A write a full Redis refused (OOM under
`maxmemory`) is none of these: it raises `WriteRefused` and leaves the breaker and the
budget alone, so reads go on (`refusals.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis
from aiocache import RedisCache
from redis.asyncio.client import PubSub
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import AuthenticationError, RedisError

from genai_api.errors import CacheUnavailable, WriteRefused
from genai_api.store import budget
from genai_api.store.base import BytesSerializer
from genai_api.store.breaker import CircuitBreaker
from genai_api.store.pool import FastBlockingPool
from genai_api.store.refusals import PROBE, Refusals, refused
from genai_api.store.reply import Reply, ReplyLost
from genai_api.store.tls import shared_context_ssl_connection

__all__ = ["RedisStore", "Reply", "ReplyLost", "redis_options", "standalone_client"]

T = TypeVar("T")
_FAILURES = (RedisError, OSError, asyncio.TimeoutError)
# KEYS: the entry. ARGV: sliding ms. GET, and the entry's TTL set back to the one it was
# stored with (`genai_api.entry`), at most ARGV[1]. (The hit paths read through the leases'
# claim script or the L1's read script, which do the same; this is for a store alone.)
SLIDE_READ = """
local value = redis.call('get', KEYS[1])
if value then
  local full = string.match(value, '^{"v":1,"ttl_ms":(%d+)')
  if full then
    redis.call('pexpire', KEYS[1], math.min(tonumber(full), tonumber(ARGV[1])))
  end
end
return value
"""
# KEYS: entries. ARGV: TTL ms. MGET, each entry found given that TTL (sliding embeddings).
_READ_EXTEND = """
local out = {}
for i = 1, #KEYS do
  local value = redis.call('get', KEYS[i])
  if value then
    redis.call('pexpire', KEYS[i], ARGV[1])
  end
  out[i] = value
end
return out
"""
WARM_CONNECTIONS = 64  # opened at start-up: a burst of cold requests must not pay to connect
WARM_SECONDS = 3.0  # start-up waits at most this long for them


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


def _why(exc: BaseException, waited: float) -> str:
    """A failed ping as Redis or the socket put it (its messages carry no password)."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {waited:g} s"
    reason = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, AuthenticationError):
        reason += " - check REDIS_PASSWORD, or the password in REDIS_URL"
    return reason


def standalone_client(
    options: dict[str, Any], *, timeout: float, max_connections: int
) -> aioredis.Redis:
    """The client of one Redis server: aiocache's, on our blocking pool (`pool.py`)."""
    opts = dict(options)
    host, port, db = opts.pop("host"), int(opts.pop("port")), int(opts.pop("db", 0))
    password = opts.pop("password", None)
    if opts.pop("connection_class", None) is aioredis.SSLConnection:  # rediss://
        opts["connection_class"] = shared_context_ssl_connection()
    # No socket_timeout (see above): redis-py 8 defaults it to 5 s, which costs an
    # `asyncio.wait_for` (a task) per command sent and a timeout per reply (~200 µs a hit).
    opts.update(timeout=timeout, health_check_interval=0, socket_timeout=None)
    # One immediate retry on a new connection when a pooled one turns out closed (Redis
    # restarted, `CLIENT KILL`, its idle timeout): without it each of the pool's stale
    # connections fails a request once. aiocache's client is built with no retry at all.
    opts.setdefault("retry", Retry(NoBackoff(), 1))
    cache = RedisCache(
        serializer=BytesSerializer(),
        endpoint=host,
        port=port,
        db=db,
        password=password,
        ssl=False,  # TLS comes with the connection class above
        pool_max_size=max_connections,
        create_connection_timeout=timeout,
        connection_pool_class=FastBlockingPool,
        connection_pool_kwargs=opts,
        timeout=None,
    )
    client: aioredis.Redis = cache.client
    return client


class RedisStore:
    """One Redis server, or the primary a Sentinel names (`client`, see `sentinel.py`)."""

    name = "redis"
    shards_down: tuple[str, ...] = ()  # one server: it answers or it does not

    def __init__(
        self,
        options: dict[str, Any] | None,
        *,
        timeout: float,
        max_connections: int,
        breaker_seconds: float,
        breaker_failures: int = 1,
        client: aioredis.Redis | None = None,
    ) -> None:
        if client is None:
            assert options is not None, "RedisStore needs connection options or a client"
            client = standalone_client(options, timeout=timeout, max_connections=max_connections)
        self.client: aioredis.Redis = client
        self._slide_read = self.client.register_script(SLIDE_READ)
        self._read_extend = self.client.register_script(_READ_EXTEND)
        self.breaker = CircuitBreaker(breaker_seconds, breaker_failures)
        self.timeout = timeout
        self.max_connections = max_connections
        self._probe: asyncio.Task[bool] | None = None
        self.last_failure: str | None = None  # why the last ping failed, for the start-up log
        self._trips = 0  # failed pings: Redis failed, though no operation counted it
        self.refusals = Refusals()  # writes refused for want of memory (`refusals.py`)

    # --- the RedisBackend surface (`backend.py`): one server, one breaker, one group
    @property
    def cooldown(self) -> float:
        return self.breaker.cooldown

    @property
    def failures(self) -> int:
        return self.breaker.failures + self._trips

    def breaker_for(self, key: str) -> CircuitBreaker:
        return self.breaker

    @property
    def full(self) -> tuple[str, ...]:
        return self.refusals.full()

    def available(self, key: str) -> bool:
        if self.breaker.is_open:
            return False
        spending = budget.current()
        return spending is None or not spending.spent

    def slot_groups(self, keys: Sequence[str]) -> list[list[str]]:
        return [list(keys)] if keys else []

    def node_groups(self, keys: Sequence[str]) -> list[list[str]]:
        return [list(keys)] if keys else []

    def register_script(self, source: str) -> AsyncScript:
        return self.client.register_script(source)

    def pubsub(self) -> PubSub:
        return self.client.pubsub()

    async def _call(
        self, op: Callable[[], Awaitable[T]], *, entries: int = 1, bounded: bool = True
    ) -> T:
        """`op()` behind the breaker and the request's budget, within its deadline unless it
        bounds each step itself."""
        spending = budget.current()
        if spending is not None and spending.spent:
            raise CacheUnavailable("redis skipped: it already failed this request")
        if self.breaker.is_open:
            if spending is not None:
                spending.spent = True  # a request uses the cache throughout, or not at all
            if self.breaker.probe_due():
                self._probe = asyncio.create_task(self.ping(), name="redis-probe")
            raise CacheUnavailable("redis circuit open")
        started = self.breaker.now()
        try:
            if not bounded:
                result = await op()
            else:
                async with asyncio.timeout(self.deadline(entries)):
                    result = await op()
        except _FAILURES as exc:
            if refused(exc):  # Redis answered: full, not failing (reads go on)
                self.breaker.success()
                raise self.refuse(exc) from exc
            if spending is not None:
                spending.spent = True
            self.breaker.failure(started)
            raise CacheUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
        self.breaker.success()
        return result

    def refuse(self, exc: BaseException) -> WriteRefused:
        """Count a write Redis refused for want of memory; the error to raise for it."""
        self.refusals.refused(self.name)
        return WriteRefused(f"redis is full, write refused (reads go on): {exc}")

    def deadline(self, entries: int) -> float:
        """REDIS_TIMEOUT for one entry; a batch gets one more per 256 entries it moves, so a
        5,000-vector write is not taken for a hung Redis (the bytes take time to travel)."""
        return self.timeout * (1 + entries // 256)

    async def guarded(
        self, op: Callable[[], Awaitable[T]], *, entries: int = 1, key: str | None = None
    ) -> T:
        """Run a raw-client operation (`op` uses `self.client`) behind the breaker.

        For other Redis users of the same pool, such as the leases: a failure counts for the
        breaker and the request's budget and raises `CacheUnavailable`, exactly as the
        store's own operations do. `entries`: how many entries `op` moves (its deadline);
        `key`: one it touches (a cluster picks the node's breaker by it; one server has one).
        """
        return await self._call(op, entries=entries)

    async def send(self, *command: Any, key: str | None = None) -> Reply:
        """Write `command` to Redis now and leave its reply to be read later (`Reply.read`).

        For a write whose reply need not hold up the client's answer: once this returns,
        the command is on a pooled connection's socket (or, when `Reply.left` is False,
        partly still in this process's buffer), so any command a client sends after seeing
        the answer reaches Redis after it. The connection is the reply's until it is read.
        """
        pool = self.client.connection_pool

        async def write() -> Reply:
            connection = await pool.get_connection()  # type: ignore[no-untyped-call]
            started = self.breaker.now()
            try:
                await connection.send_command(*command)
            except BaseException:
                await pool.release(connection)  # disconnected by the failed send
                raise
            return Reply(self, connection, started)

        return await self._call(write)

    async def get(self, key: str, *, slide_ms: int = 0) -> bytes | None:
        # The raw client, not aiocache's `get`: its decorator stack (plugins, timeout,
        # enabled check, key building) costs as much CPU as the GET itself on a hit.
        if slide_ms:
            value = await self._call(
                lambda: self._slide_read(keys=(key,), args=(slide_ms,), client=self.client)
            )
        else:
            value = await self._call(lambda: self.client.get(key))
        return cast(bytes | None, value)

    async def get_many(self, keys: Sequence[str], *, extend_ms: int = 0) -> list[bytes | None]:
        if not keys:
            return []
        if extend_ms:  # a script in place of the MGET: the same one round trip
            values = await self._call(
                lambda: self._read_extend(keys=list(keys), args=(extend_ms,), client=self.client),
                entries=len(keys),
            )
        else:
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

        async def unlink(keys: list[str]) -> int:
            return int(await self.client.unlink(*keys))

        return await self.sweep_matching(pattern, unlink)

    async def sweep_matching(
        self, pattern: str, each: Callable[[list[str]], Awaitable[int]]
    ) -> int:
        """SCAN in pages, `each(page)` for each (its answers summed), each round trip within
        its own deadline: the whole walk may take long, no step blocks Redis."""

        async def run() -> int:
            done, cursor = 0, 0
            while True:
                async with asyncio.timeout(self.timeout):
                    cursor, keys = await self.client.scan(cursor, match=pattern, count=1000)
                if keys:
                    async with asyncio.timeout(self.timeout):
                        done += await each([key_text(k) for k in keys])
                if not cursor:
                    return done

        return await self._call(run, bounded=False)

    async def ping(self) -> bool:
        """True when Redis answers now; a success also closes the breaker early."""
        try:
            # The probe usually opens a connection: one REDIS_TIMEOUT to connect, one to answer.
            async with asyncio.timeout(2 * self.timeout):
                ok = bool(await self.client.ping())
        except _FAILURES as exc:
            self.breaker.trip()
            self._trips += 1
            self.last_failure = _why(exc, 2 * self.timeout)
            return False
        if ok:
            self.breaker.reset()
            self.last_failure = None
            if self.refusals.full():
                await self._probe_write()
        return ok

    async def _probe_write(self) -> None:
        """Lately full: does Redis take a write again? (`refusals.PROBE` changes nothing.)"""
        try:
            async with asyncio.timeout(self.timeout):
                await self.client.lpushx(PROBE, b"")
        except _FAILURES as exc:
            if refused(exc):
                self.refusals.still(self.name)
            return  # anything else: not known, the state stands until it expires
        self.refusals.cleared(self.name)

    async def warm(self) -> None:
        """Open up to `WARM_CONNECTIONS` pooled connections now (called at start-up, once Redis
        answered a ping): a burst of requests on a cold pool would each connect in the same
        loop pass, stalling the worker past `REDIS_TIMEOUT`.

        A connect that fails (each is bounded by `REDIS_TIMEOUT`, which a loaded machine can
        pass) is tried again until `WARM_SECONDS` are up; whatever is open by then is kept.
        Every connect finishes or is cancelled before the pool gets its connections back, so
        none stays checked out."""
        pool = self.client.connection_pool
        # The L1's and the lease wake-ups' subscriptions hold two of the pool's connections:
        # asking for all of them would wait out WARM_SECONDS on a small pool.
        wanted = min(WARM_CONNECTIONS, max(1, self.max_connections - 2))
        opened: list[Any] = []

        async def connect() -> None:
            opened.append(await pool.get_connection())  # type: ignore[no-untyped-call]

        try:
            async with asyncio.timeout(max(WARM_SECONDS, 2 * self.timeout)):
                while len(opened) < wanted:
                    results = await asyncio.gather(
                        *(connect() for _ in range(wanted - len(opened))), return_exceptions=True
                    )
                    if any(isinstance(r, BaseException) for r in results):
                        await asyncio.sleep(self.timeout / 4)  # a loaded machine: let it breathe
        except TimeoutError:
            pass  # a warm pool is an optimisation: requests connect as they go
        finally:
            for connection in opened:
                await pool.release(connection)

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        # At shutdown a socket that is slow to close (a loaded machine, a Redis that went
        # away) is not an error worth failing the shutdown for: the process lets go of it.
        with contextlib.suppress(*_FAILURES):
            await self.client.aclose()
        with contextlib.suppress(*_FAILURES):
            await self.client.connection_pool.disconnect()


def key_text(key: bytes | str) -> str:
    """A key as SCAN answered it (bytes, without decode_responses) as text."""
    return key.decode() if isinstance(key, bytes) else key
