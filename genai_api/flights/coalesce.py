"""In-process coalescing: concurrent identical misses share one flight per key.

A flight is a task owned by the coalescer, not by the request that started it, so a client
that disconnects (its request task cancelled) never cancels the call its peers wait on.
Every waiter, the starter included, awaits the flight through `asyncio.shield`; a failed
flight wakes all of them with its error. Cross-process coalescing (Redis leases) plugs in
underneath, in the flight's own body.

    >>> result, started = await coalescer.run("k", produce)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Coalescer(Generic[T]):
    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Task[T]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def __contains__(self, key: str) -> bool:
        """A flight for `key` is running."""
        return key in self._flights

    async def run(self, key: str, produce: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """`produce()`'s result for `key`, and whether this caller started the flight."""
        task, started = self.join(key, produce)
        return await asyncio.shield(task), started

    def join(self, key: str, produce: Callable[[], Awaitable[T]]) -> tuple[asyncio.Task[T], bool]:
        """The flight for `key` (started now if there is none) without waiting for it.

        For callers that follow a flight while it runs (streams); await it through
        `asyncio.shield` so a waiter's cancellation never cancels the flight.
        """
        task = self._flights.get(key)
        if task is not None:
            return task, False
        task = asyncio.create_task(_call(produce), name=f"flight:{key[-16:]}")
        self._flights[key] = task
        task.add_done_callback(lambda t: self._land(key, t))
        return task, True

    def cancel(self, key: str) -> None:
        """Cancel the flight for `key` and forget it at once, so the next caller starts anew."""
        task = self._flights.pop(key, None)
        if task is not None:
            task.cancel()

    def _land(self, key: str, task: asyncio.Task[T]) -> None:
        if self._flights.get(key) is task:
            del self._flights[key]
        if not task.cancelled():
            task.exception()  # retrieved: a flight nobody awaits any more must not warn

    async def aclose(self) -> None:
        """Cancel flights still running at shutdown."""
        tasks = list(self._flights.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


async def _call(produce: Callable[[], Awaitable[T]]) -> T:
    return await produce()
