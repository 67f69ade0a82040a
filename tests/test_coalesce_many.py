"""Batch coalescing: a flight covers many keys, and each key can be joined on its own."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from genai_api.flights.coalesce_many import ManyCoalescer


class Fetcher:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.release = asyncio.Event()

    async def __call__(self, keys: list[str]) -> Mapping[str, str]:
        self.calls.append(keys)
        await self.release.wait()
        return {k: k.upper() for k in keys}


async def test_overlapping_batches_fetch_each_key_once() -> None:
    flights: ManyCoalescer[str] = ManyCoalescer()
    fetch = Fetcher()
    a = asyncio.create_task(flights.run(["x", "y"], fetch))
    await asyncio.sleep(0)
    b = asyncio.create_task(flights.run(["y", "z"], fetch))
    await asyncio.sleep(0)
    fetch.release.set()
    (va, own_a), (vb, own_b) = await asyncio.gather(a, b)
    assert fetch.calls == [["x", "y"], ["z"]]
    assert va == {"x": "X", "y": "Y"} and vb == {"y": "Y", "z": "Z"}
    assert (own_a, own_b) == ({"x", "y"}, {"z"})
    assert len(flights) == 0


async def test_failed_flight_fails_every_waiter_and_the_next_run_retries() -> None:
    flights: ManyCoalescer[str] = ManyCoalescer()
    attempts = 0

    async def fetch(keys: list[str]) -> Mapping[str, str]:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0.01)
        if attempts == 1:
            raise RuntimeError("upstream broke")
        return {k: "ok" for k in keys}

    results = await asyncio.gather(
        flights.run(["k"], fetch), flights.run(["k"], fetch), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    assert await flights.run(["k"], fetch) == ({"k": "ok"}, {"k"})
    assert attempts == 2


async def test_cancelled_waiter_does_not_cancel_the_flight() -> None:
    flights: ManyCoalescer[str] = ManyCoalescer()
    fetch = Fetcher()
    starter = asyncio.create_task(flights.run(["k"], fetch))
    await asyncio.sleep(0)
    joiner = asyncio.create_task(flights.run(["k"], fetch))
    await asyncio.sleep(0)
    starter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starter
    fetch.release.set()
    assert await joiner == ({"k": "K"}, set())
    assert fetch.calls == [["k"]]
