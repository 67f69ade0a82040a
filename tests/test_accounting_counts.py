"""`Accounting.record` remembers the counters of the figures it saw: the sums stay exact."""

from __future__ import annotations

from decimal import Decimal

from genai_api.savings import accounting
from genai_api.savings.accounting import Accounting, CacheStatus
from genai_api.savings.backends import MemoryStats


async def test_remembered_counters_add_up_like_fresh_ones() -> None:
    stats = MemoryStats()
    recorder = Accounting(stats)
    cost = Decimal("0.000387")
    for _ in range(3):  # the same figures: one memo entry, added three times
        recorder.record("m", CacheStatus.HIT, prompt_tokens=1200, completion_tokens=345, cost=cost)
    recorder.record("m", CacheStatus.MISS, prompt_tokens=1200, completion_tokens=345, cost=cost)
    recorder.record("m", CacheStatus.HIT, prompt_tokens=0, completion_tokens=0, cost=Decimal(0))
    recorder.record("m", CacheStatus.COALESCED, prompt_tokens=1, completion_tokens=2, cost=cost)
    assert await recorder.flush()
    totals = (await stats.read()).totals
    assert totals["hits"] == 4
    assert totals["misses"] == 1
    assert totals["coalesced"] == 1
    assert totals["saved_prompt"] == 3 * 1200 + 1
    assert totals["saved_completion"] == 3 * 345 + 2
    assert totals["saved_pusd"] == 4 * 387_000_000
    assert totals["spent_pusd"] == 387_000_000


async def test_the_memo_is_bounded() -> None:
    recorder = Accounting(MemoryStats())
    for tokens in range(accounting.COUNTS_REMEMBERED + 10):
        recorder.record("m", CacheStatus.HIT, prompt_tokens=tokens, cost=Decimal(0))
    assert len(recorder._counts) <= accounting.COUNTS_REMEMBERED
    assert await recorder.flush()
