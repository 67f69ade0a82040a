"""Cache controls from headers and the LiteLLM-style body object."""

from __future__ import annotations

from typing import Any

import pytest

from genai_api.controls import DEFAULT_CONTROLS, CacheControls, parse_controls
from genai_api.errors import InvalidRequest


def parse(headers: dict[str, str] | None = None, body: Any = None) -> CacheControls:
    return parse_controls(headers or {}, body, max_ttl=1000)


def test_no_controls_is_the_default() -> None:
    assert parse() is DEFAULT_CONTROLS
    assert DEFAULT_CONTROLS.read and DEFAULT_CONTROLS.write


def test_no_cache_skips_reading_only() -> None:
    c = parse({"cache-control": "no-cache"})
    assert (c.read, c.write, c.bypass) == (False, True, False)


def test_no_store_bypasses() -> None:
    assert parse({"cache-control": "no-store"}).bypass


def test_max_age_and_combined_directives() -> None:
    c = parse({"cache-control": "max-age=30, no-cache"})
    assert c.max_age == 30 and not c.read


def test_ttl_header_is_capped_by_max_ttl() -> None:
    assert parse({"x-cache-ttl": "60"}).ttl == 60
    assert parse({"x-cache-ttl": "5000"}).ttl == 1000


def test_zero_ttl_means_do_not_store() -> None:
    c = parse({"x-cache-ttl": "0"})
    assert not c.write


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"no-cache": True}, CacheControls(read=False, write=True)),
        ({"no-store": True}, CacheControls(read=False, write=False)),
        ({"ttl": 90}, CacheControls(ttl=90)),
        ({"s-maxage": 15}, CacheControls(max_age=15)),
    ],
)
def test_body_cache_object(body: dict[str, Any], expected: CacheControls) -> None:
    assert parse(body=body) == expected


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"x-cache-ttl": "1.5"}, None),
        ({"x-cache-ttl": "abc"}, None),
        ({"cache-control": "max-age=-1"}, None),
        ({}, {"ttl": "x"}),
        ({}, {"ttl": True}),
        ({}, {"no-cache": "yes"}),
        ({}, ["no-cache"]),
    ],
)
def test_malformed_controls_are_rejected(headers: dict[str, str], body: Any) -> None:
    with pytest.raises(InvalidRequest):
        parse(headers, body)
