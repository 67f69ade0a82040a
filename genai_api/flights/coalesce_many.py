"""In-process coalescing for batches: one flight fetches many keys, each key joinable alone.

An embeddings batch sends all its missing inputs upstream in one call, yet two batches that
share some inputs must fetch each shared input once. So a flight covers a *set* of keys, and
every key in it is registered on its own: a later batch joins the flights holding the keys it
needs and starts one new flight for the rest. As in `Coalescer`, flights are tasks owned by
this object (a client hanging up never cancels a call its peers wait on), awaited through
`asyncio.shield`; a failed flight wakes every waiter with its error.

    >>> values, started = await flights.run(["a", "b"], fetch)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Generic, TypeVar

V = TypeVar("V")

Fetch = Callable[[list[str]], Awaitable[Mapping[str, V]]]


class ManyCoalescer(Generic[V]):
    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Task[Mapping[str, V]]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    async def run(self, keys: Sequence[str], fetch: Fetch[V]) -> tuple[dict[str, V], set[str]]:
        """A value for every key of `keys` (distinct), and the keys this caller's flight fetched.

        Keys already in flight are joined; `fetch(rest)` runs once, as a new flight, for the
        others, and must answer every key it is given.
        """
        tasks: dict[asyncio.Task[Mapping[str, V]], list[str]] = {}
        own = []
        for key in keys:
            task = self._flights.get(key)
            if task is None:
                own.append(key)
            else:
                tasks.setdefault(task, []).append(key)
        if own:
            task = asyncio.create_task(_call(fetch, own), name=f"flight:{len(own)} keys")
            for key in own:
                self._flights[key] = task
            task.add_done_callback(lambda t: self._land(own, t))
            tasks[task] = own
        # Wait for every flight before raising, so a failure leaves none of ours unawaited.
        results = await asyncio.gather(*(asyncio.shield(t) for t in tasks), return_exceptions=True)
        values: dict[str, V] = {}
        for wanted, result in zip(tasks.values(), results, strict=True):
            if isinstance(result, BaseException):
                raise result
            for key in wanted:
                values[key] = result[key]
        return values, set(own)

    def _land(self, keys: list[str], task: asyncio.Task[Mapping[str, V]]) -> None:
        for key in keys:
            if self._flights.get(key) is task:
                del self._flights[key]
        if not task.cancelled():
            task.exception()  # retrieved: a flight nobody awaits any more must not warn

    async def aclose(self) -> None:
        """Cancel flights still running at shutdown."""
        tasks = set(self._flights.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


async def _call(fetch: Fetch[V], keys: list[str]) -> Mapping[str, V]:
    return await fetch(list(keys))
