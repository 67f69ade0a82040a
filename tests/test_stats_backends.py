"""The recorder on this process's memory: buckets, `since`, exact money."""

from __future__ import annotations

from decimal import Decimal

from genai_api.savings.accounting import Accounting, CacheStatus
from genai_api.savings.backends import MINUTE, MemoryStats

T0 = 1_800_000_000.0  # a minute and an hour boundary


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


async def test_memory_drops_buckets_older_than_their_window() -> None:
    clock = Clock()
    backend = MemoryStats()
    accounting = Accounting(backend, clock=clock)
    accounting.record("m", CacheStatus.HIT)
    await accounting.flush()
    clock.t += MINUTE.window + 60
    accounting.record("m", CacheStatus.HIT)
    await accounting.flush()
    assert sorted(backend.buckets["minute"]) == [int(clock.t)]
    assert sorted(backend.buckets["hour"]) == [int(T0), int(clock.t) // 3600 * 3600]
    assert (await accounting.snapshot())["hits"] == 2


async def test_memory_since_is_when_the_process_started_counting() -> None:
    accounting = Accounting(MemoryStats(), clock=Clock())
    assert (await accounting.snapshot())["since"] == "2027-01-15T08:00:00Z"


async def test_costs_are_exact_where_floats_drift() -> None:
    accounting = Accounting()
    for _ in range(10):
        accounting.record("m", CacheStatus.HIT, cost=Decimal("0.1"))
    accounting.record("m", CacheStatus.MISS, cost=Decimal("0.000000000001"))
    doc = await accounting.snapshot()
    assert sum([0.1] * 10) != 1.0  # what a float counter would have said
    assert (doc["cost_saved_usd"], doc["cost_spent_usd"]) == (1, Decimal("0.000000000001"))
