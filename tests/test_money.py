"""Integer pico-dollars: exact for every list price, printed as the shortest exact decimal."""

from __future__ import annotations

from decimal import Decimal

import pytest

from genai_api.models.table import BUILTIN_MODELS
from genai_api.savings.money import to_pico, usd


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        ("0", "0"),
        ("0.0000048", "0.0000048"),
        ("12", "12"),
        ("12.50", "12.5"),
        ("0.000000000001", "0.000000000001"),
        ("9200000.123456789012", "9200000.123456789012"),
    ],
)
def test_round_trip_is_exact(amount: str, text: str) -> None:
    assert usd(to_pico(Decimal(amount))) == text


def test_every_builtin_per_token_price_is_a_whole_number_of_picodollars() -> None:
    for model in BUILTIN_MODELS:
        for per_million in (model.input_per_million, model.output_per_million):
            per_token = per_million / Decimal(1_000_000)
            assert Decimal(to_pico(per_token)) == per_token * 10**12


def test_below_a_picodollar_rounds_half_even() -> None:
    assert (to_pico(Decimal("0.0000000000005")), to_pico(Decimal("0.0000000000015"))) == (0, 2)
