"""Embeddings that must fail: bad input is a 400 that reaches nothing, a bad answer a 502."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genai_api.apis.embeddings import EmbeddingRequest
from genai_api.apis.schema import validate
from genai_api.routes.embeddings import _plainly_valid
from tests.conftest import make_settings, running
from tests.embeddings_provider import (
    MODEL,
    Provider,
    stored,
)


@pytest.fixture
def provider(upstream: respx.MockRouter) -> Provider:
    fake = Provider()
    upstream.post("/embeddings").mock(side_effect=fake)
    return fake


BAD_INPUTS = [
    pytest.param([], id="empty-list"),
    pytest.param("", id="empty-string"),
    pytest.param(["ok", ""], id="empty-string-item"),
    pytest.param(["ok", 3], id="non-string-item"),
    pytest.param(["ok", None], id="null-item"),
    pytest.param([[1, 2], "ok"], id="mixed-kinds"),
    pytest.param([[1, 2], []], id="empty-token-array"),
    pytest.param([1, 2.5], id="float-token"),
    pytest.param([1, True], id="bool-token"),
    pytest.param([[1, 100_277]], id="token-above-cl100k"),
    pytest.param([5, -1], id="negative-token"),
    pytest.param([2**64], id="huge-token"),
    pytest.param({"text": "x"}, id="object"),
    pytest.param(None, id="null"),
    pytest.param(["x"] * 8193, id="too-many-inputs"),
]


@pytest.mark.parametrize("bad", BAD_INPUTS)
async def test_bad_input_is_400_and_reaches_nothing(provider: Provider, bad: Any) -> None:
    async with running(make_settings()) as gw:
        answer = await gw.http.post("/v1/embeddings", json={"model": MODEL, "input": bad})
        assert not gw.gateway.pipeline.embeddings.flights
        assert await stored(gw) == []
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == "input" and error["type"] == "invalid_request_error"
    assert provider.calls == []


@pytest.mark.redis
async def test_bad_inputs_write_nothing_to_redis(provider: Provider, redis_url: str) -> None:
    settings = make_settings(cache_backend="redis", redis_url=redis_url)
    async with running(settings) as gw:
        for bad in BAD_INPUTS:
            body = {"model": MODEL, "input": bad.values[0]}
            answer = await gw.http.post("/v1/embeddings", json=body)
            assert answer.status_code == 400, bad.id
        assert await stored(gw) == []
    assert provider.calls == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": MODEL}, "input"),
        ({"model": MODEL, "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": MODEL, "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": MODEL, "input": "x", "dimensions": "8"}, "dimensions"),
    ],
)
async def test_bad_parameters_are_400_naming_them(
    provider: Provider, body: dict[str, Any], param: str
) -> None:
    async with running(make_settings()) as gw:
        answer = await gw.http.post("/embeddings", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param
    assert provider.calls == []


async def test_token_ids_of_unlisted_models_are_left_to_the_provider(
    provider: Provider,
) -> None:
    async with running(make_settings()) as gw:
        answer = await gw.http.post(
            "/v1/embeddings", json={"model": "my-embedder", "input": [[1, 250_000]]}
        )
    assert answer.status_code == 200
    assert provider.calls == [[[1, 250_000]]]


@pytest.mark.parametrize(
    "data",
    [
        [{"index": 0, "embedding": "AAAAAA=="}],  # one vector for two inputs
        [{"index": 0, "embedding": "AACAPw=="}, {"index": 0, "embedding": "AACAPw=="}],
        [{"index": 0, "embedding": "AACAPw=="}, {"index": 1, "embedding": "bad!"}],
    ],
)
async def test_malformed_provider_answer_is_502_and_not_stored(
    upstream: respx.MockRouter, data: list[dict[str, Any]]
) -> None:
    route = upstream.post("/embeddings").mock(
        return_value=httpx.Response(200, json={"object": "list", "data": data, "model": MODEL})
    )
    async with running(make_settings()) as gw:
        answer = await gw.http.post("/v1/embeddings", json={"model": MODEL, "input": ["a", "b"]})
        assert await stored(gw) == []
    assert answer.status_code == 502
    assert route.call_count == 1


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=5,
)
TYPED_FIELDS = ("model", "dimensions", "encoding_format", "user", "cache")
FIELD_VALUES = st.one_of(
    JSON_VALUES,
    st.sampled_from(["float", "base64", "m", "", "x" * 257, 0, 1, 65_536, 65_537, True, {}]),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.dictionaries(st.sampled_from(TYPED_FIELDS), FIELD_VALUES))
def test_the_validation_shortcut_accepts_only_what_the_schema_accepts(
    fields: dict[str, Any],
) -> None:
    # `embed` skips the pydantic schema when `_plainly_valid` says it would pass: it must never
    # let through a body the schema rejects (whose error message the client would then miss).
    body = {"model": MODEL, "input": ["a"], **fields}
    if "model" in fields and not isinstance(fields["model"], str):
        return  # `embed` validates a non-string model before the shortcut
    if _plainly_valid(body):
        validate(EmbeddingRequest, body)


def test_the_validation_shortcut_takes_the_common_requests() -> None:
    for fields in ({}, {"encoding_format": "base64", "dimensions": 256, "user": "u"}):
        assert _plainly_valid({"model": MODEL, "input": ["a"], **fields})
