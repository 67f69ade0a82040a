"""One Redis SUBSCRIBE per purpose, kept alive in the background.

The lease wake-ups (`leases/notify.py`) and the L1's invalidations (`store/near.py`) both
need the same things from a subscription: confirmation before it counts (a Redis that
accepts connections but never answers must not pass for subscribed), a hook when it is
(re)confirmed (messages may have been missed meanwhile), retries while Redis is away, and
a `confirmed` flag their users check. This holds that loop once.

    sub = Subscription(client.pubsub, "ns:chan", on_message=handle, on_subscribed=resync,
                       name="ns-listener", what="lease notifications")
    sub.start(); ...; await sub.aclose()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.asyncio.client import PubSub
from redis.exceptions import RedisClusterException, RedisError

from genai_api.store import budget

log = logging.getLogger("genai_api.subscription")

_FAILURES = (RedisError, RedisClusterException, OSError, asyncio.TimeoutError)
IDLE_READ_SECONDS = 5.0


class Subscription:
    def __init__(
        self,
        pubsub: Callable[[], PubSub],
        channel: str,
        *,
        on_message: Callable[[bytes], None],
        on_subscribed: Callable[[], None],
        name: str,
        what: str,
        confirm_seconds: float = 1.0,
        retry_seconds: float = 1.0,
        check_seconds: float | None = None,
    ) -> None:
        """`pubsub`: a fresh pub/sub connection per session (a client's `pubsub`; on a
        cluster, one node's, the next in turn after a node failed). `check_seconds`: after
        that long without a message, PING on the subscription and treat a missing PONG
        (within `confirm_seconds`) as a lost connection; None: only the socket closing ends
        a session."""
        self.pubsub = pubsub
        self.channel = channel
        self.on_message = on_message
        self.on_subscribed = on_subscribed
        self.name = name
        self.what = what
        self.confirm_seconds = confirm_seconds
        self.retry_seconds = retry_seconds
        self.check_seconds = check_seconds
        self.confirmed = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start listening (idempotent); a Redis that is down is retried in the background."""
        if self._task is None:
            self._task = asyncio.create_task(
                self._listen(), name=self.name, context=budget.detached()
            )

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.confirmed = False

    async def _listen(self) -> None:
        while True:
            try:
                await self._session()
            except _FAILURES as exc:
                log.debug("%s interrupted: %s", self.what, exc)
            finally:
                was_confirmed, self.confirmed = self.confirmed, False
            if was_confirmed:
                log.warning("%s lost; retrying until Redis is back", self.what)
            await asyncio.sleep(self.retry_seconds)

    async def _session(self) -> None:
        pubsub = self.pubsub()
        loop = asyncio.get_running_loop()
        try:
            await pubsub.subscribe(self.channel)
            async with asyncio.timeout(self.confirm_seconds):
                while True:
                    message = await pubsub.get_message(timeout=self.confirm_seconds)
                    if message is not None and message["type"] == "subscribe":
                        break
            self.on_subscribed()
            self.confirmed = True
            idle = self.check_seconds if self.check_seconds is not None else IDLE_READ_SECONDS
            pinged_at: float | None = None
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=idle)
                if pinged_at is not None and loop.time() - pinged_at >= self.confirm_seconds:
                    raise TimeoutError(f"no PONG on the {self.what} subscription")
                if message is None:
                    if self.check_seconds is not None and pinged_at is None:
                        await pubsub.ping()
                        pinged_at = loop.time()
                elif message["type"] == "pong":
                    pinged_at = None
                elif message["type"] == "message":
                    data = message["data"]
                    self.on_message(data if isinstance(data, bytes) else str(data).encode())
        finally:
            with contextlib.suppress(*_FAILURES):
                await pubsub.aclose()
