"""Fleet-wide coalescing on Redis: one provider call per key across workers and replicas.

The protocol, for a storage key ``{ns}:e:<rest>``:

- take:   ``SET {ns}:lock:<rest> <token> NX PX <lease>`` — exactly one process wins.
- holder: re-reads the entry (it may have landed meanwhile), calls the provider, renews the
  lease every lease/3 (compare-and-PEXPIRE) while the call is alive, stores the entry, then
  one script compare-and-DELs the lease and PUBLISHes the storage key on ``{ns}:filled``.
  A failed call releases and publishes the same way, so a waiter takes over at once.
- waiter: sleeps until that PUBLISH (one shared subscription per process, `Notifier`) or a
  poll tick, re-reads the entry (found → COALESCED), else tries SET NX again: after a failed
  holder, or a dead one whose lease expired, exactly one waiter takes over. A waiter gives
  up after `max_wait` (UPSTREAM_TIMEOUT + lease) and calls the provider itself.

Every Redis call goes through the store's circuit breaker: when Redis is down, slow or
answering errors, `claim` answers `degraded` at once and the flight calls the provider with
in-process coalescing only. Lease keys live outside ``{ns}:e:``, so invalidation never
deletes them. aiocache's RedLock is not used: its waiters do not wait for the holder's
result across processes, and its expiry releases every waiter at once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from genai_api.errors import CacheUnavailable
from genai_api.leases.base import Claim
from genai_api.leases.notify import Notifier
from genai_api.store import budget
from genai_api.store.redis import RedisStore

log = logging.getLogger("genai_api.leases")

T = TypeVar("T")

POLL_SECONDS = 0.25

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('del', KEYS[1])
end
return redis.call('publish', ARGV[2], ARGV[3])
"""


class RedisLeases:
    def __init__(
        self,
        store: RedisStore,
        *,
        namespace: str,
        lease_seconds: float,
        max_wait: float,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.store = store
        self.entry_prefix = f"{namespace}:e:"
        self.lock_prefix = f"{namespace}:lock:"
        self.channel = f"{namespace}:filled"
        self.lease_ms = max(1, int(lease_seconds * 1000))
        self.max_wait = max_wait
        self.poll_seconds = poll_seconds
        self.notifier = Notifier(store.client, self.channel)
        self._renew = store.client.register_script(_RENEW)
        self._release = store.client.register_script(_RELEASE)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def state(self) -> str:
        return "fleet" if self.notifier.subscribed else "fleet-polling"

    def lock_key(self, key: str) -> str:
        """``{ns}:e:<rest>`` → ``{ns}:lock:<rest>``."""
        rest = key.removeprefix(self.entry_prefix)
        return self.lock_prefix + rest

    def start(self) -> None:
        self.notifier.start()

    async def claim(self, key: str, lookup: Callable[[], Awaitable[T | None]]) -> Claim[T]:
        lock, token = self.lock_key(key), secrets.token_hex(16)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        waited = False
        with self.notifier.watch(key) as watch:
            while True:
                try:
                    if await self._take(lock, token):
                        return await self._hold(key, lock, token, lookup, waited=waited)
                    found = await lookup()
                except CacheUnavailable:
                    return Claim(degraded=True)
                if found is not None:
                    return Claim(found, waited=True)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    log.warning("no answer from the lease holder after %.0f s", self.max_wait)
                    return Claim()
                waited = True
                if await watch.wait(min(self.poll_seconds, remaining)):
                    # A holder is done: its entry is there unless its call failed.
                    try:
                        found = await lookup()
                    except CacheUnavailable:
                        return Claim(degraded=True)
                    if found is not None:
                        return Claim(found, waited=True)

    async def _take(self, lock: str, token: str) -> bool:
        client = self.store.client
        return bool(
            await self.store.guarded(lambda: client.set(lock, token, nx=True, px=self.lease_ms))
        )

    async def _hold(
        self,
        key: str,
        lock: str,
        token: str,
        lookup: Callable[[], Awaitable[T | None]],
        *,
        waited: bool,
    ) -> Claim[T]:
        try:
            found = await lookup()  # stored between the request's lookup and our lease?
        except CacheUnavailable:
            return HeldLease(self, key, lock, token, degraded=True)
        if found is not None:
            await self.release(key, lock, token)
            return Claim(found, waited=waited)
        return HeldLease(self, key, lock, token)

    async def renew_while_alive(self, lock: str, token: str) -> None:
        """Keep the lease alive every lease/3 until cancelled (when the holder's call ends)."""
        client = self.store.client
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            try:
                kept = await self.store.guarded(
                    lambda: self._renew(keys=[lock], args=[token, self.lease_ms], client=client)
                )
            except CacheUnavailable:
                continue  # a blip: the lease may well outlive it, try again next tick
            if not kept:
                log.warning("lease %s expired under its holder; another process may call", lock)
                return

    async def release(self, key: str, lock: str, token: str) -> None:
        """Compare-and-delete the lease and publish `key`; on failure retry in the background."""
        if not await self._try_release(key, lock, token):
            self.spawn(self._release_later(key, lock, token))

    async def _try_release(self, key: str, lock: str, token: str) -> bool:
        client = self.store.client
        try:
            await self.store.guarded(
                lambda: self._release(keys=[lock], args=[token, self.channel, key], client=client)
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
            await asyncio.sleep(max(0.05, self.store.breaker.cooldown))
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
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.notifier.aclose()


class HeldLease(Claim[T]):
    """This process holds the lease: renewed while the body runs, released when it ends."""

    def __init__(
        self, leases: RedisLeases, key: str, lock: str, token: str, *, degraded: bool = False
    ) -> None:
        super().__init__(degraded=degraded)
        self._leases = leases
        self.key, self.lock, self.token = key, lock, token
        self._renewer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> HeldLease[T]:
        self._renewer = self._leases.spawn(self._leases.renew_while_alive(self.lock, self.token))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._renewer is not None:
            # Not awaited: the renew script is atomic, so one landing after the release
            # finds another token (or none) and does nothing.
            self._renewer.cancel()
        # Success or failure alike: waiters wake, find the entry or take the lease over.
        await self._leases.release(self.key, self.lock, self.token)
