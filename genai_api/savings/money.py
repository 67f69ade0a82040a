"""Exact money: USD amounts as integer pico-dollars (1e-12 USD) for counters that must add up.

Why pico: prices are quoted per 1M tokens with at most six decimals (e.g. "0.075"), so one
token costs a whole number of pico-dollars and every request's cost is an integer too.
Integers add exactly everywhere, including Redis `HINCRBY` (64-bit: one counter holds up to
about 9.2 million USD). Floats would drift; `HINCRBYFLOAT` is a double.

    >>> to_pico(Decimal("0.0000048")), usd(4_800_000), dollars(4_800_000)
    (4800000, '0.0000048', Decimal('0.0000048'))

`dollars` is what the stats document holds: a `Decimal` with exactly the counter's digits,
which `genai_api.http.responses` writes as a plain JSON number (`0.0000048`, never a string,
never `4.8e-06`), so a dashboard adds and subtracts what it reads.
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
    return plain(dollars(pico))


def dollars(pico: int) -> Decimal:
    """Integer pico-dollars → USD as an exact `Decimal` with no trailing zeros."""
    if pico == 0:
        return Decimal(0)
    return Decimal(pico).scaleb(-12).normalize()


def plain(amount: Decimal) -> str:
    """`amount` in plain decimal notation (`'0.0000048'`, `'12000'`; never an exponent)."""
    return format(amount, "f")
