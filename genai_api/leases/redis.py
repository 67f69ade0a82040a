"""Fleet-wide coalescing on Redis: one provider call per key across workers and replicas.

The protocol, for a storage key ``{ns}:e:<rest>`` and its lease ``{ns}:lock:<rest>``, in two
Redis round trips per miss (each one script, so each step is atomic):

- claim:  one script reads the entry and, only when there is none, takes the lease if it is
  free: absent, or past its deadline. A lease is a key WITHOUT a TTL whose value is
  ``<token>|<deadline ms>`` on Redis's own clock (`genai_api.leases.lua`): `volatile-*`
  eviction never picks it, and a dead holder's lease is free once its deadline passed, as
  a ``PX`` lease was once it expired. The script answers the stored bytes and their PTTL
  (found: HIT, or COALESCED after waiting; the clock is read only past that branch, so a
  hit costs what it did), 1 (this process holds the lease) or 0 (another process does;
  then it also raises the key's waiter flag ``{ns}:wait:<rest>``, which keeps a ``PX``).
  An entry the caller cannot use (too old for its max-age) is claimed over with the read
  left out. The claim is the request's only read of Redis (`claim_reads`): a request first
  looks in the L1 only (`peek`), and what a claim finds goes into the L1 as a lookup's
  read would.
- holder: calls the provider while one task per process renews every lease it holds every
  lease/3 (one script for all of them, on a cluster one per slot they are in, in
  parallel: compare the token, push the deadline on; a lease found gone, evicted under an
  `allkeys-*` policy, is taken again, `retaken`), then one script stores the entry,
  compare-and-DELs the lease and, if the waiter flag is up, drops it and PUBLISHes the
  storage key on ``{ns}:filled`` (followed by a newline and the entry itself when it is at
  most `CARRY_BYTES`: every waiting process then has its answer with the wake-up, no second
  round trip). The holder's answer waits for that script to be written to Redis, not for
  its reply (`send_fill`). A store the caller skips, or a call cancelled (its client went
  away), compare-and-DELs and publishes the same way, so a waiter takes over at once. A
  miss nobody waits for publishes nothing: no process of the fleet wakes up for it.
- failed: a holder whose provider call failed (`Claim.share_failure`; not for 401/403,
  `base.shared`) releases the same way, but its PUBLISH carries the error after the newline
  (`FAILED`): its waiters answer that error (status, body, `Retry-After`), or fall back,
  instead of calling the provider again. Nothing is stored. A waiter that only polls (its
  subscription down, or its flag lost) takes over and calls.
- waiter: sleeps until that PUBLISH (one shared subscription per process, `Notifier`) or a
  poll tick; a PUBLISH that carries the entry answers it (COALESCED) if the request can use
  it, and otherwise it runs the claim script again (which raises the flag again while it
  waits): the entry (COALESCED), or the lease after a failed holder or a dead one whose
  deadline passed (exactly one waiter wins it). A waiter gives up after `max_wait`
  (UPSTREAM_TIMEOUT + lease) and calls the provider itself. The flag is set in the same
  script that finds the lease taken, so a holder's fill either comes first (the waiter
  reads its entry) or sees the flag.

A dead holder (SIGKILL) costs its waiters one lease (LEASE_SECONDS, default 5) and a poll
tick. A live holder whose event loop stalls for more than two renewal ticks may see its
lease taken over: then two processes call the provider for that key (both answers are
right, the last stored wins), never a wrong answer.

Every Redis call goes through the store's circuit breaker: when Redis is down, slow or
answering errors, `claim` answers `degraded` at once and the flight calls the provider with
in-process coalescing only. A claim script that timed out may have run all the same: the
lease it may hold is released in the background, so no waiter sits out a whole lease.
A full Redis (OOM under `maxmemory`) still runs the claim's read-only branch, so a hit is
served; on a miss it refuses the lease's SET (the script's first write, so nothing was
taken): that claim is `degraded` too, without tripping the breaker (`WriteRefused`). The
fill and the release write nothing a full Redis refuses but the entry itself. A renewal's
SET refused, it falls back to PEXPIRE (never refused): the lease then carries a TTL, and
a lease with a TTL is held until Redis expires it, whatever its deadline says; the next
renewal Redis accepts makes it TTL-less again.
Lease keys and waiter flags live outside ``{ns}:e:``, so invalidation never deletes a live
one; a lease past its deadline (its holder died, nobody claimed the key since) is removed
by `sweep`, which `DELETE /v1/cache` runs (a flag expires after a lease anyway). On a Redis
Cluster the storage key ends in its digest as a hash tag (``...:{<sha256>}``) and the lease
and flag keep that tail, so all three share a slot and each script above touches one slot
only (`genai_api.keys.storage_key`). aiocache's RedLock is not used: its waiters do not
wait for the holder's result across processes, and its expiry releases every waiter at once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any, TypeVar, cast

from redis.exceptions import NoScriptError

from genai_api.errors import CacheUnavailable, ProviderError, WriteRefused
from genai_api.leases.base import Claim, Decode, failure_bytes, failure_from
from genai_api.leases.held import HeldLease
from genai_api.leases.lua import CLAIM, FILL, RELEASE, RENEW, SWEEP
from genai_api.leases.notify import Notifier
from genai_api.store import budget
from genai_api.store.backend import RedisBackend, Sent
from genai_api.store.near import NearStore
from genai_api.store.redis import ReplyLost

log = logging.getLogger("genai_api.leases")

T = TypeVar("T")

POLL_SECONDS = 0.25
CARRY_BYTES = 64 * 1024  # a fill's wake-up carries entries up to this size to the waiters
HELD, WAIT = 1, 0  # the claim script's answers other than the stored bytes
RETAKEN = 2  # a renewal's answer for a lease it found gone and took again


class RedisLeases:
    claim_reads = True

    def __init__(
        self,
        store: RedisBackend,
        *,
        near: NearStore | None = None,
        namespace: str,
        lease_seconds: float,
        max_wait: float,
        poll_seconds: float = POLL_SECONDS,
        carry_bytes: int = CARRY_BYTES,
    ) -> None:
        self.store = store
        self.near = near  # the store's L1, when it has one: peeked, and told what claims find
        self.invalidations = near.channel if near is not None else ""
        self.entry_prefix = f"{namespace}:e:"
        self.lock_prefix = f"{namespace}:lock:"
        self.wait_prefix = f"{namespace}:wait:"
        self.channel = f"{namespace}:filled"
        self.lease_ms = max(1, int(lease_seconds * 1000))
        self.max_wait = max_wait
        self.poll_seconds = poll_seconds
        self.carry_bytes = carry_bytes
        self.notifier = Notifier(store.pubsub, self.channel)
        self._claim = store.register_script(CLAIM)
        self._renew = store.register_script(RENEW)
        self._fill = store.register_script(FILL)
        self._release = store.register_script(RELEASE)
        self._tasks: set[asyncio.Task[None]] = set()
        self._landing: set[asyncio.Task[None]] = set()  # fills whose reply is being read
        self.held: dict[str, str] = {}  # lease -> token, of the calls alive in this process
        self._token_prefix = secrets.token_hex(12) + ":"
        self.issued = 0  # leases this process asked for: the next token ends with this number
        self.retaken = 0  # leases a renewal found gone (evicted) and took again
        self._renewer: asyncio.Task[None] | None = None
        self._abandoned: deque[tuple[float, str, str, str]] = deque()  # (until, key, lock, token)
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def state(self) -> str:
        return "fleet" if self.notifier.subscribed else "fleet-polling"

    def entry_key(self, lock: str) -> str:
        """``{ns}:lock:<rest>`` → ``{ns}:e:<rest>``."""
        return self.entry_prefix + lock.removeprefix(self.lock_prefix)

    def lock_key(self, key: str) -> str:
        """``{ns}:e:<rest>`` → ``{ns}:lock:<rest>``."""
        rest = key.removeprefix(self.entry_prefix)
        return self.lock_prefix + rest

    def wait_key(self, key: str) -> str:
        """``{ns}:e:<rest>`` → ``{ns}:wait:<rest>``: up while some process waits for `key`."""
        return self.wait_prefix + key.removeprefix(self.entry_prefix)

    def start(self) -> None:
        self.notifier.start()
        self.spawn(self._load_scripts())

    async def _load_scripts(self) -> None:
        """Load the scripts ahead of traffic: a first burst of misses on a fresh Redis would
        otherwise pay a NOSCRIPT error, a SCRIPT LOAD and a retry each."""
        client = self.store.client
        for script in (CLAIM, FILL, RELEASE, RENEW):
            try:
                await self.store.guarded(partial(client.script_load, script))
            except CacheUnavailable:
                return  # Redis is down: the first call after it is back loads them

    def peek(self, key: str) -> bytes | None:
        return None if self.near is None else self.near.peek(key)

    async def sweep(self, rest: str) -> int:
        """Delete the leases matching ``{ns}:lock:<rest>`` (a SCAN pattern) whose deadline
        has passed: holders that died, on keys nobody claimed since (a claim would have taken
        them over). Leases carry no TTL, so nothing else removes them. One script per slot
        of each SCAN page, never blocking; answers how many went."""
        client = self.store.client

        async def page(keys: list[str]) -> int:
            slots = self.store.slot_groups(keys)
            if len(slots) == 1:
                return int(await client.eval(SWEEP, len(keys), *keys))
            async with client.pipeline(transaction=False) as pipe:
                for group in slots:
                    pipe.eval(SWEEP, len(group), *group)
                return sum(int(n) for n in await pipe.execute())

        return await self.store.sweep_matching(self.lock_prefix + rest, page)

    async def claim(self, key: str, decode: Decode[T], *, slide_ms: int = 0) -> Claim[T]:
        lock, token = self.lock_key(key), self._token()
        try:
            answer, found = await self._attempt(key, lock, token, decode, slide_ms)
        except WriteRefused as exc:  # Redis is full: the script took nothing
            return Claim(failure=exc.message)
        except CacheUnavailable as exc:
            return self._abandon(key, lock, token, exc)
        if found is not None:
            return Claim(found)
        if answer == HELD:
            return HeldLease(self, key, lock, token)
        return await self._wait(key, lock, token, decode, slide_ms)

    async def _attempt(
        self, key: str, lock: str, token: str, decode: Decode[T], slide_ms: int = 0
    ) -> tuple[bytes | int, T | None]:
        """One claim: (HELD, None), (WAIT, None), or (stored bytes, the entry they decode to);
        an entry this request cannot use is claimed over (a second script, read left out).
        Stored bytes found go into the L1, as a lookup's would; a sliding entry for half its
        TTL at most, so a hot key is read again (and extended) well before it expires."""
        epoch = self.near.epoch if self.near is not None else 0
        answer = await self._claim_or_read(key, lock, token, read=True, slide_ms=slide_ms)
        if not isinstance(answer, list):
            return answer, None
        stored, ttl_ms = answer
        if self.near is not None:
            self.near.remember(key, stored, epoch, ttl_ms // 2 if slide_ms else ttl_ms)
        found = decode(stored)
        if found is not None:
            return stored, found
        held_or_wait = cast(int, await self._claim_or_read(key, lock, token, read=False))
        return held_or_wait, None  # the read left out: HELD or WAIT

    async def _wait(
        self, key: str, lock: str, token: str, decode: Decode[T], slide_ms: int
    ) -> Claim[T]:
        """Another process holds the lease: wait for its PUBLISH or a poll tick, then claim
        again, until the entry is there, the lease is ours, or `max_wait` has passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        # The doorbell is registered before the next claim, so a holder that fills between
        # the first claim and now is seen by that claim, and one that fills later rings.
        with self.notifier.watch(key) as watch:
            while True:
                try:
                    answer, found = await self._attempt(key, lock, token, decode, slide_ms)
                except WriteRefused as exc:
                    return Claim(failure=exc.message)
                except CacheUnavailable as exc:
                    return self._abandon(key, lock, token, exc)
                if found is not None:
                    return Claim(found, waited=True)
                if answer == HELD:
                    carried = watch.take()  # rung while this claim ran: the holder failed
                    error = None if carried is None else failure_from(carried)
                    if error is not None:  # share its failure, and pass it on
                        await self.release(key, lock, token, error)
                        return Claim(waited=True, error=error)
                    return HeldLease(self, key, lock, token)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    log.warning("no answer from the lease holder after %.0f s", self.max_wait)
                    return Claim()
                # Woken by the holder's PUBLISH (its entry is there unless its call failed),
                # which may carry the entry itself, or by a poll tick: the entry carried if
                # this request can use it, else the claim script again.
                if await watch.wait(min(self.poll_seconds, remaining)):
                    carried = watch.take()
                    if carried is None:
                        continue
                    error = failure_from(carried)
                    if error is not None:  # the holder's call failed: so does this flight's
                        return Claim(waited=True, error=error)
                    found = decode(carried)
                    if found is not None:
                        return Claim(found, waited=True)

    def _abandon(self, key: str, lock: str, token: str, exc: CacheUnavailable) -> Claim[T]:
        """A claim that failed (the flight goes on without Redis). Its script may have run
        all the same, the answer lost to a timeout (a worker's loop stalled past it): then
        this process holds a lease it will never fill, and every waiter in the fleet would
        sit out the whole lease. So the lease is released in the background if it is ours:
        one task for all such claims, retrying while Redis fails, until the lease would
        have expired anyway."""
        until = asyncio.get_running_loop().time() + self.lease_ms / 1000
        self._abandoned.append((until, key, lock, token))
        if self._sweeper is None:
            self._sweeper = self.spawn(self._sweep())
        return Claim(failure=exc.message)

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._abandoned:
                await asyncio.sleep(max(0.05, self.store.cooldown))
                while self._abandoned:
                    until, key, lock, token = self._abandoned[0]
                    if until > loop.time() and not await self._try_release(key, lock, token):
                        break  # Redis still failing: next tick
                    self._abandoned.popleft()
        finally:
            self._sweeper = None

    def _token(self) -> str:
        """Unique per lease asked for: random per process, counted within it."""
        self.issued += 1
        return f"{self._token_prefix}{self.issued}"

    async def _claim_or_read(
        self, key: str, lock: str, token: str, *, read: bool, slide_ms: int = 0
    ) -> list[Any] | int:
        """HELD, WAIT, or (when `read`) the stored bytes and their PTTL in ms (after a
        sliding entry's TTL was set back)."""
        client = self.store.client
        args = (token, self.lease_ms, 1 if read else 0, slide_ms)
        keys = (key, lock, self.wait_key(key))
        answer: list[Any] | int = await self.store.guarded(
            lambda: self._claim(keys=keys, args=args, client=client), key=key
        )
        return answer

    def hold(self, lock: str, token: str) -> None:
        """Renew `lock` every lease/3 from now until `drop` (the holder's call is alive)."""
        self.held[lock] = token
        if self._renewer is None:
            # Not the request's context: its Redis budget must not stop the renewals.
            self._renewer = asyncio.create_task(
                self._renew_held(), name="lease-renewer", context=budget.detached()
            )

    def drop(self, lock: str, token: str) -> None:
        if self.held.get(lock) == token:
            del self.held[lock]

    async def _renew_held(self) -> None:
        """One task per process, from the first lease it holds until `aclose`, renews every
        held lease in one script call per tick (a tick with none held costs nothing)."""
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            await self._renew_once()

    async def _renew_once(self) -> None:
        """One script per slot the held leases are in (one on one server), in parallel."""
        held = dict(self.held)
        if held:
            groups = self.store.slot_groups(list(held))
            await asyncio.gather(*(self._renew_group(g, [held[k] for k in g]) for g in groups))

    async def _renew_group(self, locks: list[str], tokens: list[str]) -> None:
        client = self.store.client
        args: list[str | int] = [self.lease_ms, *tokens]
        try:
            kept = await self.store.guarded(
                lambda: self._renew(keys=locks, args=args, client=client), key=locks[0]
            )
        except CacheUnavailable:
            return  # a blip: the leases may well outlive it, try again next tick
        for lock, token, answer in zip(locks, tokens, kept, strict=True):
            still_held = self.held.get(lock) == token
            if answer == RETAKEN:
                self.retaken += 1
                log.debug("lease %s was gone (evicted?) under its live holder: taken again", lock)
                if not still_held:
                    # Gone because the holder's own fill or release ran just before this
                    # renewal: the lease is nobody's, give it back at once.
                    self.spawn(self.release(self.entry_key(lock), lock, token))
            elif not answer and still_held:
                log.warning("lease %s expired under its holder; another process may call", lock)
                del self.held[lock]

    def _fill_keys_args(
        self, key: str, lock: str, token: str, value: bytes, ttl: float
    ) -> tuple[tuple[str, ...], tuple[Any, ...]]:
        keys = (key, lock, self.wait_key(key))
        carry = 1 if len(value) <= self.carry_bytes else 0
        args = (value, max(1, int(ttl * 1000)), token, self.channel, key, carry, self.invalidations)
        return keys, args

    async def fill(self, key: str, lock: str, token: str, value: bytes, ttl: float) -> None:
        """Store the entry, release the lease and wake the waiters of `key`, in one script."""
        keys, args = self._fill_keys_args(key, lock, token, value, ttl)
        await self._run_fill(keys, args)

    async def _run_fill(self, keys: tuple[str, ...], args: tuple[Any, ...]) -> None:
        client = self.store.client
        await self.store.guarded(
            lambda: self._fill(keys=keys, args=args, client=client), key=keys[0]
        )

    async def send_fill(
        self,
        key: str,
        lock: str,
        token: str,
        value: bytes,
        ttl: float,
        failed: Callable[[str], None],
    ) -> None:
        """`fill`, answered before its reply: returns once the script has left this process.

        At concurrency 1 a miss waits four times (claim, provider, store, client); the
        store's reply is the one wait the client need not see. Redis already holds the
        command when this returns, so whatever a client does after seeing the answer (a
        repeat, a `DELETE /v1/cache`, on any replica) reaches Redis after it: the entry is
        there for it. The reply is read by a background task; when it fails (Redis went
        away with the command in its hands), `failed` gets the reason and the lease is
        released as a failed fill's would be. A command not all written yet (a large entry
        on a busy socket) is waited for here, as `fill` does. Raises `CacheUnavailable`
        when the command could not be sent.
        """
        keys, args = self._fill_keys_args(key, lock, token, value, ttl)
        reply = await self.store.send(
            "EVALSHA", self._fill.sha, len(keys), *keys, *args, key=keys[0]
        )
        if not reply.left:
            await self._confirm(reply, keys, args)
            return
        task = self.spawn(self._confirm_later(reply, keys, args, (key, lock, token), failed))
        self._landing.add(task)
        task.add_done_callback(self._landing.discard)

    async def _confirm(self, reply: Sent, keys: tuple[str, ...], args: tuple[Any, ...]) -> None:
        """The fill's reply. When Redis lost the script (restarted, `SCRIPT FLUSH`) or the
        connection (a pooled one Redis had closed), the fill runs again the usual way, which
        loads the script or reconnects; that store lands after the answer. Running it twice
        is harmless: the same value, a lease already released, a flag already dropped."""
        try:
            await reply.read()
        except (NoScriptError, ReplyLost):
            await self._run_fill(keys, args)

    async def _confirm_later(
        self,
        reply: Sent,
        keys: tuple[str, ...],
        args: tuple[Any, ...],
        lease: tuple[str, str, str],
        failed: Callable[[str], None],
    ) -> None:
        try:
            await self._confirm(reply, keys, args)
        except CacheUnavailable as exc:
            failed(exc.message)
            await self.release(*lease)  # if the script did not run, the lease is still ours

    async def release(
        self, key: str, lock: str, token: str, error: ProviderError | None = None
    ) -> None:
        """Compare-and-delete the lease and wake the waiters of `key` (they take over, or,
        given the `error` a failed-over call had, fall back); on failure retry in the
        background (then they take over)."""
        if not await self._try_release(key, lock, token, error):
            self.spawn(self._release_later(key, lock, token))

    async def _try_release(
        self, key: str, lock: str, token: str, error: ProviderError | None = None
    ) -> bool:
        client = self.store.client
        keys = (lock, self.wait_key(key))
        args: tuple[str | bytes, ...] = (token, self.channel, key)
        if error is not None:
            args += (failure_bytes(error),)
        try:
            await self.store.guarded(
                lambda: self._release(keys=keys, args=args, client=client), key=lock
            )
        except CacheUnavailable:
            return False
        return True

    async def _release_later(self, key: str, lock: str, token: str) -> None:
        # Without this a Redis blip at release time would stall this key's waiters (and the
        # next miss anywhere in the fleet) until the lease expires.
        loop = asyncio.get_running_loop()
        until = loop.time() + self.lease_ms / 1000
        while loop.time() < until:
            await asyncio.sleep(max(0.05, self.store.cooldown))
            if await self._try_release(key, lock, token):
                return

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A background task owned by the leases, cancelled by `aclose`; it runs outside the
        request that started it (no Redis budget: a failed request still releases)."""
        task = asyncio.create_task(work, context=budget.detached())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self) -> None:
        # Fills already sent are seen through (each read is bounded by REDIS_TIMEOUT), so a
        # lease whose fill failed is released, not left to expire.
        await asyncio.gather(*self._landing, return_exceptions=True)
        tasks = [*self._tasks, *([self._renewer] if self._renewer is not None else [])]
        self._renewer = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.notifier.aclose()
