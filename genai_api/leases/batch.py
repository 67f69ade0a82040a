"""Fleet-wide coalescing for embedding batches: many keys leased in one Redis round trip.

An embeddings flight (`genai_api.embeddings.runner`) needs many inputs at once; a `SET NX`
lease per input would cost a round trip each. `BatchLeases.fill` takes a flight's keys
(storage keys the request found missing) through the single-key protocol (`leases/redis.py`)
in batches:

1. claim: one script takes, per key, the lease ``{ns}:lock:<rest>`` unless its entry exists
   or another process holds it (a TTL-less ``<token>|<deadline>``, as single keys have:
   `genai_api.leases.lua`), and answers a letter per key (claimed, waited for, stored) and
   every entry's stored bytes; for a key held elsewhere it raises the key's waiter flag
   ``{ns}:wait:<rest>``. Usable entries are answered at once (HIT).
2. hold: the claimed keys go upstream at once (split at 2,048 inputs as always) while one
   script per lease/3 renews all their leases (compare the token, push the deadline on;
   take again one that eviction removed). The renewer is stopped and awaited before the
   release, so no renewal lands after it. Then one script writes their entries,
   compare-and-DELs their leases and PUBLISHes, in one message (space-separated), the keys
   whose waiter flag it found up and dropped: a batch nobody waits for wakes no process.
   Keys whose provider call failed (a `ProviderError` that `base.shared` allows) are
   released with the failure after a newline: their waiters share it (the whole waiting
   batch fails with it, as the holder's request did); nothing is stored. A call that ended
   otherwise (cancelled) releases plainly, so waiters elsewhere take over at once.
3. wait: keys another process holds are waited for with one doorbell for all of them (the
   process's one subscription, or a poll tick), each wake-up re-running step 1 on what is
   still missing: entries found are COALESCED; leases found free (the holder failed
   without sharing it, or died and its deadline passed) are taken over and fetched by a
   call of their own. After `max_wait` (UPSTREAM_TIMEOUT + lease) the flight fetches the
   rest itself.

On a Redis Cluster a script may touch one slot only: each step runs one script per slot the
keys are in (`slot_groups`), pipelined per node, nodes in parallel (`node_groups`), each node
behind its own breaker, so a node that fails costs only the keys it holds.

Redis failing at any step degrades what is left to in-process coalescing: fetched without a
lease and not stored (BYPASS). Leases the flight may hold are released in the background,
retried until they would have expired anyway, so nothing stays locked. A full Redis (OOM)
refuses the claim script at its first SET NX, so a claim it refused took nothing: nothing to
release (`WriteRefused`; the batch's hits were read by its lookup before).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from genai_api.errors import CacheUnavailable, ProviderError, WriteRefused
from genai_api.leases.base import Leases, failure_bytes, failure_from, shared
from genai_api.leases.lua import BATCH_CLAIM, BATCH_RENEW, BATCH_STORE_RELEASE
from genai_api.leases.notify import Watch
from genai_api.leases.redis import RedisLeases
from genai_api.savings.accounting import CacheStatus

log = logging.getLogger("genai_api.leases")

V = TypeVar("V")
R = TypeVar("R")

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
        self._renew = self.store.register_script(BATCH_RENEW)

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
        return [self.leases.wait_key(key) for key in keys]

    async def per_node(
        self, keys: Sequence[str], op: Callable[[list[str]], Awaitable[R]], extra: int = 0
    ) -> list[tuple[list[str], R | CacheUnavailable]]:
        """`op(group)` for each server's share of `keys` (all of them on one server), nodes
        in parallel, each behind its node's breaker: what each returned, or its failure."""

        async def one(group: list[str]) -> tuple[list[str], R | CacheUnavailable]:
            try:
                return group, await self.store.guarded(
                    lambda: op(group), key=group[0], entries=len(group) + extra
                )
            except CacheUnavailable as exc:
                return group, exc

        groups = self.store.node_groups(keys)
        if len(groups) == 1:
            return [await one(groups[0])]
        return list(await asyncio.gather(*(one(group) for group in groups)))

    async def store_and_release(
        self,
        entries: Sequence[tuple[str, bytes, float]],
        keys: Sequence[str],
        token: str,
        failure: bytes | None = None,
    ) -> tuple[list[str], CacheUnavailable | None]:
        """Write `entries`, release the leases on `keys` and publish them: one script per slot,
        pipelined per server, servers in parallel (one script on one server). `failure`
        (`failure_bytes` of the call that failed for `keys`) goes with the message, for their
        waiters to share. Returns the keys (of both) on servers that failed, and the first
        failure."""
        if not entries and not keys:
            return [], None
        items = {key: (value, ttl) for key, value, ttl in entries}
        leased = set(keys)
        client, channel = self.store.client, self.leases.channel

        def script(group: list[str]) -> list[Any]:
            stored = [k for k in group if k in items]
            held = [k for k in group if k in leased]
            pairs = [a for k in stored for a in (items[k][0], max(1, int(items[k][1] * 1000)))]
            every = [*stored, *self.locks(held), *self.flags(held)]
            script = [
                BATCH_STORE_RELEASE,
                len(every),
                *every,
                len(stored),
                token,
                channel,
                *pairs,
                *held,
            ]
            return script if failure is None else [*script, failure]

        async def write(group: list[str]) -> None:
            slots = self.store.slot_groups(group)
            if len(slots) == 1:
                await client.eval(*script(slots[0]))
                return
            async with client.pipeline(transaction=False) as pipe:
                for keys_of_slot in slots:
                    pipe.eval(*script(keys_of_slot))
                await pipe.execute()

        done = await self.per_node(list(dict.fromkeys([*items, *keys])), write, extra=1)
        lost = [key for group, r in done if isinstance(r, CacheUnavailable) for key in group]
        return lost, next((r for _, r in done if isinstance(r, CacheUnavailable)), None)

    async def release(self, keys: Sequence[str], token: str) -> None:
        """Release now; on failure keep retrying in the background."""
        lost, _ = await self.store_and_release((), keys, token)
        if lost:
            self.release_soon(lost, token)

    def release_soon(self, keys: Sequence[str], token: str) -> None:
        """Release in the background (at once, then after each breaker cool-down) until the
        leases would have expired anyway."""
        self.leases.spawn(self._release_until_done(list(keys), token))

    async def _release_until_done(self, keys: list[str], token: str) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + self.leases.lease_ms / 1000
        while keys:
            keys, _ = await self.store_and_release((), keys, token)
            if not keys or loop.time() >= until:
                return
            await asyncio.sleep(max(0.05, self.store.cooldown))

    async def renew_while_alive(self, keys: list[str], token: str, stop: asyncio.Event) -> None:
        """Renew every lease of `keys` each lease/3 until `stop` is set (the fetch is over):
        one script per slot they are in (one on one server). Not cancelled but stopped, and
        awaited before the leases are released: a renewal landing after the release would
        find them gone and take them again."""
        client, lease_ms = self.store.client, self.leases.lease_ms
        groups = self.store.slot_groups(self.locks(keys))
        alive = len(keys)

        async def renew(locks: list[str]) -> list[int]:
            try:
                return list(
                    await self.store.guarded(
                        lambda: self._renew(keys=locks, args=[token, lease_ms], client=client),
                        entries=len(locks),
                        key=locks[0],
                    )
                )
            except CacheUnavailable:
                return [len(locks), 0]  # a blip: the leases may well outlive it, next tick

        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(lease_ms / 3000):
                    await stop.wait()
            if stop.is_set():
                return
            answers = await asyncio.gather(*(renew(g) for g in groups))
            kept, retaken = sum(a[0] for a in answers), sum(a[1] for a in answers)
            if retaken:
                self.leases.retaken += retaken
                log.debug(
                    "%d leases were gone (evicted?) under their live holder: taken again", retaken
                )
            kept += retaken
            if kept < alive:
                lost, alive = alive - kept, kept
                log.warning("%d of %d leases expired under their holder", lost, len(keys))
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
        self.shared: ProviderError | None = None  # a holder elsewhere failed for our keys

    async def run(self, keys: list[str]) -> dict[str, tuple[V, CacheStatus]]:
        leases = self.owner.leases
        loop = asyncio.get_running_loop()
        deadline = loop.time() + leases.max_wait
        waiting, found_as = list(keys), CacheStatus.HIT
        try:
            with leases.notifier.watch_many(keys) as self.watch:
                while waiting and not self._failing():
                    waiting, again = await self._round(waiting, found_as)
                    if not waiting or again:
                        continue
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        log.warning("no answer from lease holders after %.0f s", leases.max_wait)
                        self._start(waiting, lease=False, store=True)
                        break
                    found_as = CacheStatus.COALESCED
                    if await self.watch.wait(min(leases.poll_seconds, remaining)):
                        carried = self.watch.take()
                        shared_error = None if carried is None else failure_from(carried)
                        if shared_error is not None:  # a holder's call for some key failed
                            self.shared = shared_error
                            break
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
        if self.shared is not None:
            raise self.shared  # the batch cannot be answered whole: as the holder's could not
        return self.results

    async def _round(self, keys: list[str], found_as: CacheStatus) -> tuple[list[str], bool]:
        """One round trip per server: claim what is free, read what is stored. Answers what
        was found, starts fetching what the flight now holds, and without the cache (BYPASS)
        what sits on a server that failed; returns the keys held elsewhere, and whether to
        go again at once (an entry exists but cannot be used: claim it anyway)."""
        owner = self.owner
        client = owner.store.client
        args = (self.token, owner.leases.lease_ms, int(self.refresh))

        async def claim(group: list[str]) -> tuple[list[str], str, list[bytes | None]]:
            slots = owner.store.slot_groups(group)
            every = [[*held, *owner.locks(held), *owner.flags(held)] for held in slots]
            if len(slots) == 1:  # one server, or one slot: no pipeline around one command
                replies = [await client.eval(BATCH_CLAIM, len(every[0]), *every[0], *args)]
            else:
                async with client.pipeline(transaction=False) as pipe:
                    for keys_of_slot in every:
                        pipe.eval(BATCH_CLAIM, len(keys_of_slot), *keys_of_slot, *args)
                    replies = await pipe.execute()
            marks = b"".join(reply[0] for reply in replies).decode()
            raws = [raw for reply in replies for raw in reply[1:]]
            return [k for held in slots for k in held], marks, raws

        ordered: list[str] = []
        marks, raws = "", []
        for group, answer in await owner.per_node(keys, claim):
            if isinstance(answer, CacheUnavailable):
                # Redis was tried: the script may have run (unless Redis refused its writes)
                if answer.__cause__ is not None and not isinstance(answer, WriteRefused):
                    owner.release_soon(group, self.token)
                self._told(answer)
                self._start(group, lease=False, store=False)  # degraded: BYPASS
                continue
            ordered += answer[0]
            marks += answer[1]
            raws += answer[2]
        if ordered != keys[: len(ordered)]:  # grouped by server: back to request order
            where = {key: i for i, key in enumerate(keys)}
            rows = sorted(zip(ordered, marks, raws, strict=True), key=lambda r: where[r[0]])
            ordered, marks, raws = (
                [r[0] for r in rows],
                "".join(r[1] for r in rows),
                [r[2] for r in rows],
            )
        usable = await self.read(ordered, raws)
        claimed, waiting, spare = [], [], []
        again = False
        for key, mark in zip(ordered, marks, strict=True):
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
        (if `lease`) in one round trip per server; record each value with its status (BYPASS
        for those on a server that failed)."""
        owner = self.owner
        stop = asyncio.Event()
        renewer = None
        if lease:
            renewer = owner.leases.spawn(owner.renew_while_alive(keys, self.token, stop))
        try:
            fetched = await self.fetch(keys)
        except BaseException:
            if renewer is not None:
                stop.set()
                await asyncio.wait([renewer])
                await owner.release(keys, self.token)  # waiters elsewhere take over at once
            raise
        if renewer is not None:
            stop.set()
            await asyncio.wait([renewer])
        status = CacheStatus.MISS if store else CacheStatus.BYPASS
        released = keys if lease else []
        error = fetched.error
        if lease and isinstance(error, ProviderError) and shared(error):
            # The keys whose call failed: released with the failure, for their waiters to share.
            failed = [k for k in keys if k not in fetched.values]
            released = [k for k in keys if k in fetched.values]
            lost, failure = await owner.store_and_release(
                (), failed, self.token, failure_bytes(error)
            )
            if failure is not None:
                self._told(failure)
                owner.release_soon(lost, self.token)
        lost, failure = await owner.store_and_release(
            fetched.entries if store else (), released, self.token
        )
        if failure is not None:
            self._told(failure)
            if lease:
                owner.release_soon([k for k in lost if k in set(keys)], self.token)
        bypassed = set(lost)
        bypass = CacheStatus.BYPASS
        self.results.update(
            (k, (v, bypass if k in bypassed else status)) for k, v in fetched.values.items()
        )
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
