"""The shape check: its byte-count shortcut never lets through what the full walk refuses."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genai_api.errors import InvalidRequest
from genai_api.http import json_limits
from genai_api.http.json_limits import check_shape

SMALL_DEPTH, SMALL_ITEMS = 4, 5

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(alphabet="[]{},\"' ab", max_size=6),
    lambda inner: (
        st.lists(inner, max_size=7) | st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=40,
)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _longest(value: Any) -> int:
    if isinstance(value, dict):
        return max((_longest(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return max([len(value), *(_longest(v) for v in value)])
    return 0


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json_limits, "MAX_DEPTH", SMALL_DEPTH)
    monkeypatch.setattr(json_limits, "MAX_ARRAY_ITEMS", SMALL_ITEMS)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=st.dictionaries(st.text(max_size=3), json_values, max_size=4))
def test_refused_exactly_when_too_deep_or_too_long(
    small_limits: None, body: dict[str, Any]
) -> None:
    raw = orjson.dumps(body)
    too_much = _depth(body) > SMALL_DEPTH or _longest(body) > SMALL_ITEMS
    try:
        check_shape(raw, body)
    except InvalidRequest as exc:
        assert too_much, exc.message
        assert exc.code in ("json_too_deep", "array_too_long")
    else:
        assert not too_much


def test_brackets_inside_strings_only_cost_a_walk(small_limits: None) -> None:
    body = {"text": "[[[[[[[[{{{{,,,,,,,,"}
    check_shape(orjson.dumps(body), body)  # suspicious bytes, harmless shape


def test_refusal_names_the_top_level_field(small_limits: None) -> None:
    body = {"model": "m", "tools": [[[[[1]]]]]}
    with pytest.raises(InvalidRequest) as caught:
        check_shape(orjson.dumps(body), body)
    assert (caught.value.code, caught.value.param) == ("json_too_deep", "tools")
