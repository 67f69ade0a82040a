"""Exact money: USD amounts as integer pico-dollars (1e-12 USD) for counters that must add up.

Why pico: prices are quoted per 1M tokens with at most six decimals (e.g. "0.075"), so one
token costs a whole number of pico-dollars and every request's cost is an integer too.
Integers add exactly everywhere, including Redis `HINCRBY` (64-bit: one counter holds up to
about 9.2 million USD). Floats would drift; `HINCRBYFLOAT` is a double.

    >>> to_pico(Decimal("0.0000048")), usd(4_800_000)
    (4800000, '0.0000048')
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache

PICO_PER_USD = 10**12
_SCALE = Decimal(PICO_PER_USD)


@lru_cache(maxsize=4096)  # a cache hit's cost is one of few amounts: convert each once
def to_pico(amount: Decimal) -> int:
    """USD → integer pico-dollars (rounded half-even below 1e-12, which list prices never are)."""
    return int((amount * _SCALE).to_integral_value(rounding=ROUND_HALF_EVEN))


@lru_cache(maxsize=4096)  # a hit's saved cost is one of few amounts: format each once
def usd(pico: int) -> str:
    """Integer pico-dollars → the shortest exact decimal string, e.g. `'0.0000048'`, `'12'`."""
    if pico == 0:
        return "0"
    return format(Decimal(pico).scaleb(-12).normalize(), "f")
