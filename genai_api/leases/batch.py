"""Fleet-wide coalescing for embedding batches: many keys leased in one Redis round trip.

An embeddings flight (`genai_api.embeddings.runner`) needs many inputs at once; a `SET NX`
lease per input would cost a round trip each. `BatchLeases.fill` takes a flight's keys
(storage keys the request found missing) through the single-key protocol (`leases/redis.py`)
in batches:

1. claim: one script tries, per key, ``SET {ns}:lock:<rest> <token> NX PX <lease>`` unless
   its entry exists, and answers a letter per key (claimed, waited for, stored); for a key
   held elsewhere it raises the key's waiter flag ``{ns}:wait:<rest>``. The same pipeline
   MGETs the entries. Usable entries are answered at once (HIT).
2. hold: the claimed keys go upstream at once (split at 2,048 inputs as always) while one
   script per lease/3 renews all their leases (compare-and-PEXPIRE). Then one round trip
   writes their entries and runs a script that compare-and-DELs their leases and PUBLISHes,
   in one message (space-separated), the keys whose waiter flag it found up and dropped: a
   batch nobody waits for wakes no process. A failed call releases the same way, so
   waiters elsewhere take over at once.
3. wait: keys another process holds are waited for with one doorbell for all of them (the
   process's one subscription, or a poll tick), each wake-up re-running step 1 on what is
   still missing: entries found are COALESCED; leases found free (the holder failed, or
   died and its lease expired) are taken over and fetched by a call of their own. After
   `max_wait` (UPSTREAM_TIMEOUT + lease) the flight fetches the rest itself.

Redis failing at any step degrades what is left to in-process coalescing: fetched without a
lease and not stored (BYPASS). Leases the flight may hold are released in the background,
retried until they would have expired anyway, so nothing stays locked.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from genai_api.errors import CacheUnavailable
from genai_api.leases.base import Leases
from genai_api.leases.notify import Watch
from genai_api.leases.redis import RedisLeases
from genai_api.savings.accounting import CacheStatus

log = logging.getLogger("genai_api.leases")

V = TypeVar("V")

# KEYS: n entries, their n leases, their n waiter flags. ARGV: token, lease ms, refresh (1:
# claim even where an entry exists, for max-age requests). A letter per key: c(laimed),
# w(ait: held elsewhere, flag raised), s(tored).
_CLAIM = """
local n = #KEYS / 3
local out = {}
for i = 1, n do
  if ARGV[3] == '0' and redis.call('exists', KEYS[i]) == 1 then
    out[i] = 's'
  elseif redis.call('set', KEYS[n + i], ARGV[1], 'NX', 'PX', ARGV[2]) then
    out[i] = 'c'
  else
    redis.call('set', KEYS[2 * n + i], '1', 'PX', ARGV[2])
    out[i] = 'w'
  end
end
return table.concat(out)
"""
_RENEW = """
local kept = 0
for i = 1, #KEYS do
  if redis.call('get', KEYS[i]) == ARGV[1] then
    kept = kept + redis.call('pexpire', KEYS[i], ARGV[2])
  end
end
return kept
"""
# KEYS: n leases, their n waiter flags. ARGV: token, channel, then the n storage keys.
_RELEASE = """
local n = #KEYS / 2
local woken = {}
for i = 1, n do
  if redis.call('get', KEYS[i]) == ARGV[1] then
    redis.call('del', KEYS[i])
  end
  if redis.call('del', KEYS[n + i]) == 1 then
    woken[#woken + 1] = ARGV[2 + i]
  end
end
if #woken == 0 then
  return 0
end
return redis.call('publish', ARGV[2], table.concat(woken, ' '))
"""

Read = Callable[[list[str], list[bytes | None]], Awaitable[dict[str, V]]]


@dataclass(slots=True)
class Fetched(Generic[V]):
    """One upstream fetch: values by key (a failed chunk's keys absent), the entries to
    store as (key, bytes, TTL), and the first error."""

    values: dict[str, V]
    entries: list[tuple[str, bytes, float]] = field(default_factory=list)
    error: BaseException | None = None


Fetch = Callable[[list[str]], Awaitable[Fetched[V]]]
Failed = Callable[[CacheUnavailable], None]


def batch_leases(leases: Leases) -> BatchLeases | None:
    """Batch leases beside the single-key ones; None without Redis (in-process only)."""
    return BatchLeases(leases) if isinstance(leases, RedisLeases) else None


class BatchLeases:
    def __init__(self, leases: RedisLeases) -> None:
        self.leases = leases
        self.store = leases.store
        self._renew = self.store.client.register_script(_RENEW)

    async def fill(
        self,
        keys: list[str],
        read: Read[V],
        fetch: Fetch[V],
        *,
        refresh: bool = False,
        failed: Failed | None = None,
    ) -> dict[str, tuple[V, CacheStatus]]:
        """A value and status for every key of `keys` (distinct); the first fetch error is
        raised once everything settled (stored, released).

        `read(keys, raws)`: the usable values among stored bytes; `fetch(keys)`: fresh ones
        from upstream; `refresh`: stored entries may be too old (max-age), claim them too;
        `failed`: told of each Redis failure (the flight goes on without Redis).
        """
        return await _Flight(self, read, fetch, refresh, failed).run(keys)

    def locks(self, keys: Sequence[str]) -> list[str]:
        return [self.leases.lock_key(key) for key in keys]

    def flags(self, keys: Sequence[str]) -> list[str]:
        """The waiter flags of `keys`: ``{ns}:e:<rest>`` → ``{ns}:wait:<rest>``."""
        entry_prefix = self.leases.entry_prefix
        prefix = entry_prefix.removesuffix("e:") + "wait:"
        return [prefix + key.removeprefix(entry_prefix) for key in keys]

    async def store_and_release(
        self, entries: Sequence[tuple[str, bytes, float]], keys: Sequence[str], token: str
    ) -> None:
        """One round trip: write `entries`, release the leases on `keys`, publish `keys`."""
        if not entries and not keys:
            return
        client, channel = self.store.client, self.leases.channel

        async def write() -> None:
            async with client.pipeline(transaction=False) as pipe:
                for key, value, ttl in entries:
                    pipe.set(key, value, px=max(1, int(ttl * 1000)))
                if keys:
                    held = [*self.locks(keys), *self.flags(keys)]
                    pipe.eval(_RELEASE, len(held), *held, token, channel, *keys)
                await pipe.execute()

        await self.store.guarded(write, entries=len(entries) + 1)

    async def release(self, keys: Sequence[str], token: str) -> None:
        """Release now; on failure keep retrying in the background."""
        try:
            await self.store_and_release((), keys, token)
        except CacheUnavailable:
            self.release_soon(keys, token)

    def release_soon(self, keys: Sequence[str], token: str) -> None:
        """Release in the background (at once, then after each breaker cool-down) until the
        leases would have expired anyway."""
        self.leases.spawn(self._release_until_done(list(keys), token))

    async def _release_until_done(self, keys: list[str], token: str) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + self.leases.lease_ms / 1000
        while True:
            try:
                await self.store_and_release((), keys, token)
                return
            except CacheUnavailable:
                if loop.time() >= until:
                    return
            await asyncio.sleep(max(0.05, self.store.breaker.cooldown))

    async def renew_while_alive(self, keys: list[str], token: str) -> None:
        """Renew every lease of `keys` each lease/3 until cancelled (the fetch is over)."""
        client, locks, lease_ms = self.store.client, self.locks(keys), self.leases.lease_ms
        alive = len(locks)
        while True:
            await asyncio.sleep(lease_ms / 3000)
            try:
                kept = int(
                    await self.store.guarded(
                        lambda: self._renew(keys=locks, args=[token, lease_ms], client=client),
                        entries=len(locks),
                    )
                )
            except CacheUnavailable:
                continue  # a blip: the leases may well outlive it, try again next tick
            if kept < alive:
                lost, alive = alive - kept, kept
                log.warning("%d of %d leases expired under their holder", lost, len(locks))
            if not kept:
                return


class _Flight(Generic[V]):
    """One `fill`: its token, what it found, and the fetches of what it holds."""

    def __init__(
        self,
        owner: BatchLeases,
        read: Read[V],
        fetch: Fetch[V],
        refresh: bool,
        failed: Failed | None,
    ) -> None:
        self.owner = owner
        self.read, self.fetch, self.refresh, self.failed = read, fetch, refresh, failed
        self.token = secrets.token_hex(16)
        self.results: dict[str, tuple[V, CacheStatus]] = {}
        self.jobs: list[asyncio.Task[None]] = []
        self.watch: Watch | None = None

    async def run(self, keys: list[str]) -> dict[str, tuple[V, CacheStatus]]:
        leases = self.owner.leases
        loop = asyncio.get_running_loop()
        deadline = loop.time() + leases.max_wait
        waiting, found_as = list(keys), CacheStatus.HIT
        try:
            with leases.notifier.watch_many(keys) as self.watch:
                while waiting and not self._failing():
                    try:
                        waiting, again = await self._round(waiting, found_as)
                    except CacheUnavailable as exc:
                        self._told(exc)
                        self._start(waiting, lease=False, store=False)  # degraded: BYPASS
                        break
                    if not waiting or again:
                        continue
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        log.warning("no answer from lease holders after %.0f s", leases.max_wait)
                        self._start(waiting, lease=False, store=True)
                        break
                    found_as = CacheStatus.COALESCED
                    await self.watch.wait(min(leases.poll_seconds, remaining))
            if self.jobs:
                await asyncio.wait(self.jobs)
        except BaseException:
            for job in self.jobs:
                job.cancel()  # each releases what it holds
            await asyncio.gather(*self.jobs, return_exceptions=True)
            raise
        errors = [error for error in map(_error, self.jobs) if error is not None]
        if errors:
            raise errors[0]
        return self.results

    async def _round(self, keys: list[str], found_as: CacheStatus) -> tuple[list[str], bool]:
        """One round trip: claim what is free, read what is stored. Answers what was found,
        starts fetching what the flight now holds; returns the keys held elsewhere, and
        whether to go again at once (an entry exists but cannot be used: claim it anyway)."""
        owner = self.owner
        every = [*keys, *owner.locks(keys), *owner.flags(keys)]
        client = owner.store.client
        args = (self.token, owner.leases.lease_ms, int(self.refresh))

        async def claim() -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                pipe.eval(_CLAIM, len(every), *every, *args)
                pipe.mget(keys)
                return await pipe.execute()

        try:
            marks, raws = await owner.store.guarded(claim, entries=len(keys))
        except CacheUnavailable as exc:
            if exc.__cause__ is not None:  # Redis was tried: the script may have run
                owner.release_soon(keys, self.token)
            raise
        usable = await self.read(keys, raws)
        claimed, waiting, spare = [], [], []
        again = False
        for key, mark in zip(keys, marks.decode(), strict=True):
            if key in usable:
                self.results[key] = (usable[key], found_as)
                if mark == "c":
                    spare.append(key)  # stored by someone without a lease meanwhile
            elif mark == "c":
                claimed.append(key)
            else:
                waiting.append(key)
                if mark == "s":  # stored but unusable (corrupt, or gone since): refetch it
                    self.refresh = again = True
        if spare:
            owner.release_soon(spare, self.token)
        if claimed:
            self._start(claimed, lease=True, store=True)
        return waiting, again

    def _start(self, keys: list[str], *, lease: bool, store: bool) -> None:
        job = asyncio.create_task(self._hold(keys, lease=lease, store=store), name="batch-fetch")
        watch = self.watch
        if watch is not None:
            job.add_done_callback(lambda _: watch.ring())  # a failure stops the waiting at once
        self.jobs.append(job)

    async def _hold(self, keys: list[str], *, lease: bool, store: bool) -> None:
        """Fetch `keys` upstream; store what came back (if `store`) and release the leases
        (if `lease`) in one round trip; record each value with its status."""
        owner = self.owner
        renewer = owner.leases.spawn(owner.renew_while_alive(keys, self.token)) if lease else None
        try:
            fetched = await self.fetch(keys)
        except BaseException:
            if lease:
                await owner.release(keys, self.token)  # waiters elsewhere take over at once
            raise
        finally:
            if renewer is not None:
                renewer.cancel()
        status = CacheStatus.MISS if store else CacheStatus.BYPASS
        try:
            await owner.store_and_release(
                fetched.entries if store else (), keys if lease else (), self.token
            )
        except CacheUnavailable as exc:
            self._told(exc)
            status = CacheStatus.BYPASS
            if lease:
                owner.release_soon(keys, self.token)
        self.results.update((k, (v, status)) for k, v in fetched.values.items())
        if fetched.error is not None:
            raise fetched.error

    def _failing(self) -> bool:
        return any(_error(job) is not None for job in self.jobs)

    def _told(self, exc: CacheUnavailable) -> None:
        if self.failed is not None:
            self.failed(exc)


def _error(job: asyncio.Task[None]) -> BaseException | None:
    if not job.done() or job.cancelled():
        return None
    return job.exception()
