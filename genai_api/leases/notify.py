"""One Redis subscription per process that wakes the waiters of a key when its holder is done.

Holders PUBLISH the storage key on the namespace's channel after storing (or after failing,
so a waiter can take over); a batch holder publishes all its keys in one message, separated
by spaces (storage keys hold none). A holder that stored a small entry publishes the key, a
newline and the stored bytes: its waiters get them with the doorbell (`Watch.take`). Every
process keeps a single SUBSCRIBE on that channel, started in the app's lifespan, and
dispatches each message to the local `Watch`es of that key: a waiting request costs no
connection and no Redis round trip while it sleeps.

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
from collections.abc import Callable, Iterable, Iterator

from redis.asyncio.client import PubSub

from genai_api.store.subscription import Subscription

log = logging.getLogger("genai_api.leases")


class Watch:
    """One waiting flight's doorbell."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._carried: bytes | None = None

    def ring(self, carried: bytes | None = None) -> None:
        """Wake the waiter; `carried`: the entry stored with this ring, if it came along."""
        self._carried = carried
        self._event.set()

    def take(self) -> bytes | None:
        """The entry the last ring carried (once), None if it carried none."""
        carried, self._carried = self._carried, None
        return carried

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
        pubsub: Callable[[], PubSub],
        channel: str,
        *,
        confirm_seconds: float = 1.0,
        retry_seconds: float = 1.0,
    ) -> None:
        self.channel = channel
        self._watches: dict[str, set[Watch]] = {}
        # After every (re)subscription all waiters re-check: a holder may have published
        # while nobody was listening.
        self._subscription = Subscription(
            pubsub,
            channel,
            on_message=self.deliver,
            on_subscribed=self._ring_all,
            name="lease-notifier",
            what="lease notifications",
            confirm_seconds=confirm_seconds,
            retry_seconds=retry_seconds,
        )

    @property
    def subscribed(self) -> bool:
        return self._subscription.confirmed

    def start(self) -> None:
        """Start listening (idempotent); a Redis that is down is retried in the background."""
        self._subscription.start()

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

    def deliver(self, message: str | bytes) -> None:
        """Ring the watches of the key in `message` (or of each, space-separated); what
        follows a newline (a key's stored entry, or the failure of the keys' call) is carried
        to their watches."""
        data = message.encode() if isinstance(message, str) else message
        head, newline, carried = data.partition(b"\n")
        what = carried if newline else None
        for key in head.decode().split(" "):
            for watch in self._watches.get(key, ()):
                watch.ring(what)

    def _ring_all(self) -> None:
        for watches in self._watches.values():
            for watch in watches:
                watch.ring()

    async def aclose(self) -> None:
        await self._subscription.aclose()
