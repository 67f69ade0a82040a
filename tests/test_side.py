"""Side-by-side rounds are judged by the median of per-round ratios, not a ratio of medians."""

from __future__ import annotations

from bench.side import Comparison
from bench.wrk import Sample


def _sample(target: str, rps: float) -> Sample:
    return Sample(target, rps, 1.0, 1.0, 1.0, 1.0, int(rps), 0, 100.0)


def test_ratio_pairs_each_round_with_its_reference() -> None:
    cmp = Comparison("x", "limit", 32)
    # The machine slows down in round 2 and 3 for both: paired ratios stay at 0.5.
    cmp.samples["limit"] = [_sample("limit", r) for r in (1000, 400, 300)]
    cmp.samples["gateway"] = [_sample("gateway", r) for r in (500, 200, 150)]
    assert cmp.ratio("gateway") == 0.5
    assert cmp.median("gateway", "rps") / cmp.median("limit", "rps") == 0.5
    cmp.samples["gateway"] = [_sample("gateway", r) for r in (900, 200, 150)]
    assert cmp.ratio("gateway") == 0.5  # one lucky round does not move the median
