"""In-process coalescing: one flight per key, errors shared, cancellation contained."""

from __future__ import annotations

import asyncio

import pytest

from genai_api.flights.coalesce import Coalescer


async def test_concurrent_callers_share_one_flight() -> None:
    calls = 0

    async def produce() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return "answer"

    coalescer: Coalescer[str] = Coalescer()
    results = await asyncio.gather(*(coalescer.run("k", produce) for _ in range(20)))
    assert calls == 1
    assert [r for r, _ in results] == ["answer"] * 20
    assert sum(started for _, started in results) == 1
    assert len(coalescer) == 0


async def test_different_keys_fly_separately() -> None:
    coalescer: Coalescer[str] = Coalescer()

    async def produce(value: str) -> str:
        await asyncio.sleep(0.01)
        return value

    (a, _), (b, _) = await asyncio.gather(
        coalescer.run("a", lambda: produce("a")), coalescer.run("b", lambda: produce("b"))
    )
    assert (a, b) == ("a", "b")


async def test_failure_reaches_every_waiter_and_next_call_retries() -> None:
    attempts = 0

    async def produce() -> str:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0.02)
        if attempts == 1:
            raise RuntimeError("upstream broke")
        return "ok"

    coalescer: Coalescer[str] = Coalescer()
    results = await asyncio.gather(
        *(coalescer.run("k", produce) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    assert (await coalescer.run("k", produce))[0] == "ok"
    assert attempts == 2


async def test_cancelling_the_starter_does_not_cancel_the_flight() -> None:
    gate = asyncio.Event()

    async def produce() -> str:
        await gate.wait()
        return "done"

    coalescer: Coalescer[str] = Coalescer()
    starter = asyncio.create_task(coalescer.run("k", produce))
    await asyncio.sleep(0)
    waiter = asyncio.create_task(coalescer.run("k", produce))
    await asyncio.sleep(0)
    starter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starter
    gate.set()
    assert (await asyncio.wait_for(waiter, 1))[0] == "done"


async def test_aclose_cancels_running_flights() -> None:
    coalescer: Coalescer[str] = Coalescer()

    async def forever() -> str:
        await asyncio.sleep(3600)
        return "never"

    task = asyncio.create_task(coalescer.run("k", forever))
    await asyncio.sleep(0)
    await coalescer.aclose()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_join_returns_the_running_flight_without_waiting() -> None:
    release = asyncio.Event()

    async def produce() -> str:
        await release.wait()
        return "answer"

    coalescer: Coalescer[str] = Coalescer()
    task, started = coalescer.join("k", produce)
    same, again = coalescer.join("k", produce)
    assert (started, again) == (True, False)
    assert same is task and not task.done()
    release.set()
    assert await task == "answer"


async def test_cancel_forgets_the_flight_so_the_next_caller_starts_anew() -> None:
    async def produce() -> str:
        await asyncio.Event().wait()
        return "never"

    coalescer: Coalescer[str] = Coalescer()
    first, _ = coalescer.join("k", produce)
    coalescer.cancel("k")
    second, started = coalescer.join("k", produce)
    assert started and second is not first
    with pytest.raises(asyncio.CancelledError):
        await first
    coalescer.cancel("k")
    assert len(coalescer) == 0
