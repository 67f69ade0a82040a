"""The semantic benchmark's own parts: its labelled set and its MiniLM forward pass."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.semantic.data import load
from bench.semantic.models import check_minilm, minilm


def test_the_labelled_set_and_its_splits() -> None:
    pairs = load()
    splits = Counter((p.split, p.hit) for p in pairs)
    assert len(pairs) >= 600
    assert splits[("held", True)] >= 50 and splits[("held", False)] >= 80
    groups = {p.group: p.split for p in pairs}
    assert all(len({p.split for p in pairs if p.group == g}) == 1 for g in groups)  # whole


@pytest.mark.slow
def test_minilm_in_numpy_reproduces_its_documented_similarities() -> None:
    rows = check_minilm(minilm())  # raises when off by more than 1e-3
    assert [round(got, 3) for *_, got in rows] == [0.666, 0.105, 0.141]
