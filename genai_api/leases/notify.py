"""One Redis subscription per process that wakes the waiters of a key when its holder is done.

Holders PUBLISH the storage key on the namespace's channel after storing (or after failing,
so a waiter can take over); a batch holder publishes all its keys in one message, separated
by spaces (storage keys hold none). Every process keeps a single SUBSCRIBE on that channel, started
in the app's lifespan, and dispatches each message to the local `Watch`es of that key: a
waiting request costs no connection and no Redis round trip while it sleeps.

The subscription is a latency optimisation, not a correctness one: waiters also poll, so a
message lost while the subscription is down (Redis restarting, failing over) costs at most
one poll interval. After every (re)subscription all waiters are woken to re-check at once.

    with notifier.watch(skey) as watch:
        woken = await watch.wait(0.25)   # True: a holder published; False: poll tick
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("genai_api.leases")

_FAILURES = (RedisError, OSError, asyncio.TimeoutError)
IDLE_READ_SECONDS = 5.0


class Watch:
    """One waiting flight's doorbell."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def ring(self) -> None:
        self._event.set()

    async def wait(self, seconds: float) -> bool:
        """True when a holder published this key, False after `seconds` (time to poll)."""
        try:
            async with asyncio.timeout(seconds):
                await self._event.wait()
        except TimeoutError:
            return False
        self._event.clear()
        return True


class Notifier:
    def __init__(
        self,
        client: aioredis.Redis,
        channel: str,
        *,
        confirm_seconds: float = 1.0,
        retry_seconds: float = 1.0,
    ) -> None:
        self._client = client
        self.channel = channel
        self.confirm_seconds = confirm_seconds
        self.retry_seconds = retry_seconds
        self.subscribed = False
        self._watches: dict[str, set[Watch]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start listening (idempotent); a Redis that is down is retried in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name="lease-notifier")

    @contextlib.contextmanager
    def watch(self, key: str) -> Iterator[Watch]:
        """Register before the first read of the entry, so no PUBLISH falls in between."""
        watch = Watch()
        self._watches.setdefault(key, set()).add(watch)
        try:
            yield watch
        finally:
            watches = self._watches.get(key)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[key]

    @contextlib.contextmanager
    def watch_many(self, keys: Iterable[str]) -> Iterator[Watch]:
        """One doorbell for many keys (a batch waiter): rings when any of them is published."""
        watch, keys = Watch(), list(keys)
        for key in keys:
            self._watches.setdefault(key, set()).add(watch)
        try:
            yield watch
        finally:
            for key in keys:
                watches = self._watches.get(key)
                if watches is not None:
                    watches.discard(watch)
                    if not watches:
                        del self._watches[key]

    @property
    def waiting(self) -> int:
        """Keys with a local waiter (for tests and debugging)."""
        return len(self._watches)

    def deliver(self, message: str) -> None:
        """Ring the watches of the key in `message` (or of each, space-separated)."""
        for key in message.split(" "):
            for watch in self._watches.get(key, ()):
                watch.ring()

    def _ring_all(self) -> None:
        for watches in self._watches.values():
            for watch in watches:
                watch.ring()

    async def _listen(self) -> None:
        while True:
            try:
                await self._session()
            except _FAILURES as exc:
                log.debug("lease notifications interrupted: %s", exc)
            if self.subscribed:
                log.warning("lease notifications lost; waiters poll until Redis is back")
            self.subscribed = False
            await asyncio.sleep(self.retry_seconds)

    async def _session(self) -> None:
        pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(self.channel)
            # A Redis that accepts connections but never answers must not pass for subscribed.
            async with asyncio.timeout(self.confirm_seconds):
                while True:
                    message = await pubsub.get_message(timeout=self.confirm_seconds)
                    if message is not None and message["type"] == "subscribe":
                        break
            self.subscribed = True
            self._ring_all()  # a holder may have published while we were not listening
            while True:
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=IDLE_READ_SECONDS
                )
                if message is not None and message["type"] == "message":
                    data = message["data"]
                    self.deliver(data.decode() if isinstance(data, bytes) else str(data))
        finally:
            with contextlib.suppress(*_FAILURES):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.subscribed = False
