"""Integer pico-dollars: exact for every list price, printed as the shortest exact decimal."""

from __future__ import annotations

from decimal import Decimal

import pytest

from genai_api.http.responses import json_response
from genai_api.models.table import BUILTIN_MODELS
from genai_api.savings.money import dollars, to_pico, usd


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


@pytest.mark.parametrize(
    ("pico", "written"),
    [
        (0, b"0"),
        (3_113_000_000, b"0.003113"),  # a float would write 0.003113 too; the next ones not
        (1, b"0.000000000001"),  # a float: 1e-12
        (31_130_000, b"0.00003113"),  # a float: 3.113e-05
        (300_000_000_000, b"0.3"),  # one tenth three times over is 0.30000000000000004
        (12_000 * 10**12, b"12000"),  # Decimal's normal form is 1.2E+4
        (9_200_000_123_456_789_012_345, b"9200000123.456789012345"),  # > a float's 17 digits
    ],
)
def test_dollars_are_written_as_plain_json_numbers_with_every_digit(
    pico: int, written: bytes
) -> None:
    body = json_response({"cost_saved_usd": dollars(pico)}).body
    assert body == b'{"cost_saved_usd":' + written + b"}"


def test_json_still_refuses_what_is_not_a_number() -> None:
    with pytest.raises(TypeError):
        json_response({"x": Decimal("NaN")})
    with pytest.raises(TypeError):
        json_response({"x": object()})


def test_every_builtin_per_token_price_is_a_whole_number_of_picodollars() -> None:
    for model in BUILTIN_MODELS:
        for per_million in (model.input_per_million, model.output_per_million):
            per_token = per_million / Decimal(1_000_000)
            assert Decimal(to_pico(per_token)) == per_token * 10**12


def test_below_a_picodollar_rounds_half_even() -> None:
    assert (to_pico(Decimal("0.0000000000005")), to_pico(Decimal("0.0000000000015"))) == (0, 2)
