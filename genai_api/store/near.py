"""The Redis store with a small in-process L1 ("near cache") in front of its single-key reads.

Why: on a cache hit the Redis GET is most of what the gateway spends (its round trip through
redis-py and the event loop), and a hot key is read many times a second by every process.
So `get(key)` answers from a bounded LRU of raw entry bytes (`NearCache`) when it can, and
otherwise reads Redis and keeps what it read. Everything else goes to Redis unchanged:
`get_many` (embeddings), every write, the leases (which use the raw client).

When the L1 answers nothing (the request goes to Redis as before):
- the invalidation subscription is not confirmed (starting, Redis down, reconnecting), so an
  invalidation may be missed; the L1 is cleared whenever it (re)subscribes or loses it;
- the Redis breaker is open, or this request's Redis budget is spent: a down backend gives
  BYPASS, never an L1 answer; any Redis failure clears the L1.

Invalidation across processes and replicas, over one pub/sub channel ``{ns}:l1``:
- `delete_matching` (`DELETE /v1/cache`) clears this process's L1 and publishes ``*``
  (clear all: a superset of any filter, and deletions are rare), after the deletion;
- `set` (what a `Cache-Control: no-cache` refresh stores, among the rare plain stores: misses
  store through the leases' script) publishes the key in the same round trip as the SET.
Each process subscribes once (`start`) and clears its L1, or drops the key, on each message.
A silent dead subscription is found by a PING on it after a second without messages.

What can still be stale, and for how long: an entry deleted or changed out of band
(`redis-cli DEL`, a TTL expiring) is answered for at most `CACHE_L1_SECONDS` after it was read;
an invalidation published by another process is applied when its message arrives (well under
a millisecond on a LAN; a failed PUBLISH falls back to the same `CACHE_L1_SECONDS` bound).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar, cast

from genai_api.errors import CacheUnavailable
from genai_api.store import budget
from genai_api.store.backend import RedisBackend
from genai_api.store.base import CacheStore
from genai_api.store.breaker import CircuitBreaker
from genai_api.store.cluster import ClusterStore
from genai_api.store.near_cache import NearCache
from genai_api.store.redis import RedisStore
from genai_api.store.refusals import Refusals
from genai_api.store.subscription import Subscription

log = logging.getLogger("genai_api.store")

T = TypeVar("T")
CLEAR_ALL = b"*"  # storage keys never are a bare "*"
# KEYS: the entry. ARGV: sliding (ms, optional: the entry's TTL is set back to the one it
# was stored with, at most this). Answers {value, PTTL in ms} or nil.
_READ = """
local value = redis.call('get', KEYS[1])
if value then
  if tonumber(ARGV[1] or '0') > 0 then
    local full = string.match(value, '^{"v":1,"ttl_ms":(%d+)')
    if full then
      redis.call('pexpire', KEYS[1], math.min(tonumber(full), tonumber(ARGV[1])))
    end
  end
  return {value, redis.call('pttl', KEYS[1])}
end
return false
"""
# KEYS: the entry. ARGV: value, TTL ms, channel. A store and its invalidation in one command
# (a pipeline would do on one server; a cluster's pipeline refuses PUBLISH).
_SET = """
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
return redis.call('publish', ARGV[3], KEYS[1])
"""


class NearStore:
    def __init__(
        self,
        redis: RedisBackend,
        l1: NearCache,
        channel: str,
        *,
        confirm_seconds: float = 1.0,
        retry_seconds: float = 1.0,
        check_seconds: float = 1.0,
    ) -> None:
        self.redis = redis
        self.name = redis.name
        self.l1 = l1
        self.channel = channel
        self.hits = 0  # answers from the L1 (for tests and debugging)
        self._failures_seen = 0
        self._subscription = Subscription(
            redis.pubsub,
            channel,
            on_message=self.invalidate,
            on_subscribed=self.l1.clear,  # held while nobody listened: may have missed some
            name="l1-invalidations",
            what="L1 invalidations",
            confirm_seconds=confirm_seconds,
            retry_seconds=retry_seconds,
            check_seconds=check_seconds,  # a silent dead subscription is found by a PING
        )
        # The entry and its TTL in one round trip, so the L1 never answers an entry after it
        # expired in Redis (an `X-Cache-TTL: 1` is one second). A script, not a GET+PTTL
        # pipeline: redis-py's pipeline costs ~45 µs more CPU than a GET, the script ~20.
        self._read = redis.register_script(_READ)
        self._set = redis.register_script(_SET)
        # One server (or a Sentinel's primary) has one breaker: `_serving` reads it directly,
        # as before clusters existed (two calls fewer on every L1 hit); a cluster asks per key.
        self._one_breaker = redis.breaker if isinstance(redis, RedisStore) else None

    # --- what the leases, stats and health checks use: the Redis store's own
    @property
    def client(self) -> Any:
        return self.redis.client

    @property
    def breaker(self) -> CircuitBreaker:
        return self.redis.breaker

    def breaker_for(self, key: str) -> CircuitBreaker:
        return self.redis.breaker_for(key)

    @property
    def last_failure(self) -> str | None:
        return self.redis.last_failure

    @property
    def shards_down(self) -> tuple[str, ...]:
        return self.redis.shards_down

    @property
    def full(self) -> tuple[str, ...]:
        return self.redis.full

    @property
    def refusals(self) -> Refusals:
        return self.redis.refusals

    async def guarded(
        self, op: Callable[[], Awaitable[T]], *, entries: int = 1, key: str | None = None
    ) -> T:
        return await self.redis.guarded(op, entries=entries, key=key)

    async def ping(self) -> bool:
        return await self.redis.ping()

    async def warm(self) -> None:
        await self.redis.warm()
        with contextlib.suppress(CacheUnavailable):  # else the first read loads it
            await self.redis.guarded(partial(self.redis.client.script_load, _READ))

    # --- reads
    def _serving(self, key: str) -> bool:
        """May the L1 answer `key` for the running request?"""
        if not self.listening:
            if len(self.l1):
                self.l1.clear()  # the subscription is lost: news may be missed meanwhile
            return False
        breaker = self._one_breaker
        if breaker is not None:  # one server: its one breaker, checked inline (every hit)
            if breaker.is_open or breaker.failures != self._failures_seen:
                # Redis failed since the last look: whatever happened meanwhile, start afresh.
                self._failures_seen = breaker.failures
                self.l1.clear()
                return False
            spending = budget.current()
            return spending is None or not spending.spent
        redis = self.redis
        if redis.failures != self._failures_seen:
            self._failures_seen = redis.failures
            self.l1.clear()
            return False
        # A node whose breaker is open, or that failed this request: BYPASS, as in Redis.
        return redis.available(key)

    async def get(self, key: str, *, slide_ms: int = 0) -> bytes | None:
        """From the L1 if it holds `key` (a sliding entry is not extended then: it is held
        for half its TTL at most, and the read after that extends it), else from Redis."""
        if not self._serving(key):
            return await self.redis.get(key, slide_ms=slide_ms)
        raw = self.l1.get(key)
        if raw is not None:
            self.hits += 1
            return raw
        epoch = self.l1.epoch
        args = (slide_ms,) if slide_ms else ()
        found = await self.redis.guarded(partial(self._read, keys=(key,), args=args), key=key)
        if found is None:
            return None
        raw, ttl_ms = found
        self.remember(key, raw, epoch, ttl_ms // 2 if slide_ms else ttl_ms)
        return cast(bytes, raw)

    def peek(self, key: str) -> bytes | None:
        """The L1's copy of `key`, when the L1 may answer: a read without a round trip."""
        if not self._serving(key):
            return None
        raw = self.l1.get(key)
        if raw is not None:
            self.hits += 1
        return raw

    @property
    def epoch(self) -> int:
        """Taken before a read of Redis, handed back to `remember` with what it answered."""
        return self.l1.epoch

    def remember(self, key: str, raw: bytes, epoch: int, ttl_ms: int) -> None:
        """Keep what a read of Redis answered for `key` (PTTL `ttl_ms`, -1: no expiry),
        unless an invalidation came after `epoch` (the read may predate it)."""
        if self.listening:
            self.l1.put(key, raw, epoch, None if ttl_ms == -1 else ttl_ms / 1000)

    async def get_many(self, keys: Sequence[str], *, extend_ms: int = 0) -> list[bytes | None]:
        return await self.redis.get_many(keys, extend_ms=extend_ms)

    # --- writes
    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """SET and PUBLISH the key in one script: other processes drop their copy."""
        args = (value, max(1, int(ttl * 1000)), self.channel)
        try:
            await self.redis.guarded(partial(self._set, keys=(key,), args=args), key=key)
        finally:
            self.l1.discard(key)  # after the write: a read in flight must not put the old value

    async def set_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        # Embedding entries only: they are read with `get_many`, so the L1 never holds them.
        await self.redis.set_many(items)

    async def delete_matching(self, pattern: str) -> int:
        """Delete in Redis, then clear the L1 here and in every process (before answering);
        a deletion that failed part way is published too (some entries are gone)."""
        try:
            return await self.redis.delete_matching(pattern)
        finally:
            self.l1.clear()
            try:
                await self.redis.guarded(lambda: self.redis.client.publish(self.channel, CLEAR_ALL))
            except CacheUnavailable as exc:
                log.warning(
                    "L1 invalidation not published (%s): other processes may answer deleted "
                    "entries for up to CACHE_L1_SECONDS",
                    exc.message,
                )

    # --- the invalidation subscription
    @property
    def listening(self) -> bool:
        """Subscribed and confirmed: the L1 may answer."""
        return self._subscription.confirmed

    def start(self) -> None:
        """Subscribe (idempotent); the L1 answers nothing until the subscription is confirmed."""
        self._subscription.start()

    def invalidate(self, message: bytes) -> None:
        """Apply one message of the channel: ``*`` clears all, anything else is a key."""
        if message == CLEAR_ALL:
            self.l1.clear()
        else:
            self.l1.discard(message.decode())

    async def stop(self) -> None:
        """End the subscription: from now on every read goes to Redis."""
        await self._subscription.aclose()
        self.l1.clear()

    async def close(self) -> None:
        await self.stop()
        await self.redis.close()


def redis_of(store: CacheStore) -> RedisBackend | None:
    """The Redis store behind `store` (itself, or the one its L1 fronts), else None."""
    if isinstance(store, NearStore):
        return store.redis
    return store if isinstance(store, RedisStore | ClusterStore) else None
