"""Bad input gets a clear 4xx in OpenAI's envelope, reaches no provider and stores nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import respx
from hypothesis import strategies as st
from starlette.exceptions import HTTPException

from genai_api.apis import chat, completions
from genai_api.apis.chat import ChatCompletionRequest, ChatMessage
from genai_api.apis.completions import CompletionRequest
from genai_api.apis.schema import validate
from genai_api.app import create_app
from tests.conftest import CHAT, chat_response, make_settings, running


def plainly_valid(schema: type[Any], body: dict[str, Any]) -> bool:
    """The shortcut of the API whose schema is `schema`."""
    api = chat if schema is ChatCompletionRequest else completions
    return api.plainly_valid(body)


def _assert_envelope(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    return dict(body["error"])


@pytest.fixture
def provider(upstream: respx.MockRouter) -> respx.Route:
    return upstream.post("/chat/completions").mock(
        return_value=httpx.Response(200, json=chat_response())
    )


async def test_malformed_json_is_400(provider: respx.Route) -> None:
    async with running(make_settings()) as gw:
        answer = await gw.http.post(
            "/v1/chat/completions",
            content=b'{"model": "gpt-4o",',
            headers={"Content-Type": "application/json"},
        )
    assert _assert_envelope(answer, 400)["code"] == "invalid_json"
    assert provider.call_count == 0


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"text"', b"", b"null"])
async def test_non_object_body_is_400(provider: respx.Route, raw: bytes) -> None:
    async with running(make_settings()) as gw:
        answer = await gw.http.post("/v1/chat/completions", content=raw)
    _assert_envelope(answer, 400)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": CHAT["messages"]}, "model"),
        ({"model": "gpt-4o-mini", "messages": []}, "messages"),
        ({"model": "gpt-4o-mini"}, "messages"),
        ({"model": 5, "messages": CHAT["messages"]}, "model"),
        ({**CHAT, "temperature": "hot"}, "temperature"),
        ({**CHAT, "temperature": 3}, "temperature"),
        ({**CHAT, "n": 0}, "n"),
        ({**CHAT, "n": "2"}, "n"),
        ({**CHAT, "max_tokens": -1}, "max_tokens"),
        (
            {"model": "gpt-4o-mini", "messages": [{"role": "wizard", "content": "x"}]},
            "messages.0.role",
        ),
        ({"model": "gpt-4o-mini", "messages": ["hello"]}, "messages.0"),
    ],
)
async def test_schema_violations_are_400_naming_the_parameter(
    provider: respx.Route, body: dict[str, Any], param: str
) -> None:
    async with running(make_settings()) as gw:
        answer = await gw.http.post("/v1/chat/completions", json=body)
        stored = len(gw.gateway.store._cache._cache)
    assert _assert_envelope(answer, 400)["param"] == param
    assert provider.call_count == 0
    assert stored == 0


async def test_completion_without_prompt_is_400(upstream: respx.MockRouter) -> None:
    async with running(make_settings()) as gw:
        answer = await gw.http.post("/v1/completions", json={"model": "gpt-3.5-turbo-instruct"})
    assert _assert_envelope(answer, 400)["param"] == "prompt"


@pytest.mark.parametrize(
    ("headers", "param"),
    [
        ({"X-Cache-TTL": "soon"}, "X-Cache-TTL"),
        ({"X-Cache-TTL": "-5"}, "X-Cache-TTL"),
        ({"Cache-Control": "max-age=abc"}, "Cache-Control"),
    ],
)
async def test_bad_cache_controls_are_400(
    provider: respx.Route, headers: dict[str, str], param: str
) -> None:
    async with running(make_settings()) as gw:
        answer = await gw.http.post("/v1/chat/completions", json=CHAT, headers=headers)
    assert _assert_envelope(answer, 400)["param"] == param


async def test_bad_body_cache_object_is_400(provider: respx.Route) -> None:
    async with running(make_settings()) as gw:
        answer = await gw.http.post("/v1/chat/completions", json={**CHAT, "cache": "yes"})
    _assert_envelope(answer, 400)


async def test_declared_oversize_body_is_413_before_reading(provider: respx.Route) -> None:
    async with running(make_settings(max_request_bytes=2048)) as gw:
        answer = await gw.http.post(
            "/v1/chat/completions",
            content=b"x" * 4096,
            headers={"Content-Type": "application/json"},
        )
    assert _assert_envelope(answer, 413)["code"] == "request_too_large"


async def test_chunked_oversize_body_is_413(provider: respx.Route) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 1024

    async with running(make_settings(max_request_bytes=2048)) as gw:
        answer = await gw.http.post("/v1/chat/completions", content=chunks())
        after = await gw.http.post("/v1/chat/completions", json=CHAT)
    _assert_envelope(answer, 413)
    assert after.status_code == 200


async def test_wrong_content_type_is_415(provider: respx.Route) -> None:
    async with running(make_settings()) as gw:
        answer = await gw.http.post(
            "/v1/chat/completions",
            content=b"model=gpt-4o",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    _assert_envelope(answer, 415)


async def test_unknown_model_on_closed_list_is_404(tmp_path: Path, provider: respx.Route) -> None:
    models = tmp_path / "models.toml"
    models.write_text('closed = true\n[models."gpt-4o-mini"]\nttl = 60\n')
    async with running(make_settings(models_file=models)) as gw:
        unknown = await gw.http.post("/v1/chat/completions", json={**CHAT, "model": "gpt-99"})
        known = await gw.http.post("/v1/chat/completions", json=CHAT)
    assert _assert_envelope(unknown, 404)["code"] == "model_not_found"
    assert known.status_code == 200


async def test_unknown_model_on_open_list_is_passed_through(provider: respx.Route) -> None:
    async with running(make_settings()) as gw:
        answer = await gw.http.post("/v1/chat/completions", json={**CHAT, "model": "llama-3"})
    assert answer.status_code == 200
    assert provider.call_count == 1


async def test_unknown_route_is_404_in_envelope(provider: respx.Route) -> None:
    async with running(make_settings()) as gw:
        answer = await gw.http.post("/nothing", json=CHAT)  # outside /v1: never relayed
    _assert_envelope(answer, 404)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("GET", "/v1/completions", "POST"), ("PUT", "/v1/embeddings", "POST"),
     ("POST", "/v1/models", "GET, HEAD"), ("GET", "/v1/cache", "DELETE")],
)  # fmt: skip
async def test_a_wrong_method_is_405_in_envelope_naming_the_allowed_ones(
    provider: respx.Route, method: str, path: str, allowed: str
) -> None:
    async with running(make_settings()) as gw:
        answer = await gw.http.request(method, path)
    _assert_envelope(answer, 405)
    assert set(answer.headers["allow"].split(", ")) == set(allowed.split(", "))  # a set: any order


async def test_a_401_raised_as_an_http_exception_names_the_bearer_scheme() -> None:
    # The gateway's own refusals are AuthenticationFailed; any other 401 (Starlette's, or a
    # route's HTTPException) goes through the same handler and says how to authenticate too.
    app = create_app(make_settings(), http_client=httpx.AsyncClient())

    @app.get("/needs-a-key")
    async def needs_a_key() -> None:
        raise HTTPException(401, "Log in first.")

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            answer = await http.get("/needs-a-key")
    _assert_envelope(answer, 401)
    assert answer.headers["www-authenticate"] == "Bearer"


# The value of a message field besides role, content and name: null (always valid), or not.
MESSAGE_FIELD_VALUES = st.one_of(
    st.none(), st.text(max_size=2), st.integers(), st.lists(st.sampled_from([{}, 1]), max_size=2)
)
MESSAGE = st.fixed_dictionaries(
    {
        "role": st.one_of(
            st.sampled_from(["user", "system", "tool"]),
            st.sampled_from(["robot", "", 1, None, [], {}]),
        )
    },
    optional={
        "content": st.one_of(
            st.none(), st.text(max_size=3), st.integers(), st.lists(st.none(), max_size=1)
        ),
        "name": st.one_of(st.none(), st.text(max_size=2), st.integers()),
        **{
            name: MESSAGE_FIELD_VALUES
            for name in sorted(set(ChatMessage.model_fields) - {"role", "content", "name"})
        },
    },
)
MESSAGE_VALUES = st.one_of(MESSAGE, st.none(), st.text(max_size=2))
CHAT_FIELD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False),
    st.sampled_from([0, 1, 2, 2.0001, -0.5, 128, 129, 10_000_000, 10_000_001, "", "m", "x" * 257]),
    st.text(max_size=3),
    st.lists(MESSAGE_VALUES, max_size=3),
    st.dictionaries(st.text(max_size=2), st.none(), max_size=1),
)
CHAT_FIELDS = (
    "model",
    "messages",
    "prompt",
    "temperature",
    "top_p",
    "n",
    "max_tokens",
    "max_completion_tokens",
    "seed",
    "stream",
    "user",
    "cache",
    "stop",
    "metadata",
    "other",
)


def _base(schema: type[ChatCompletionRequest] | type[CompletionRequest]) -> dict[str, Any]:
    if schema is ChatCompletionRequest:
        return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    return {"model": "gpt-4o-mini", "prompt": "hi"}


@hypothesis.settings(
    max_examples=600, suppress_health_check=[hypothesis.HealthCheck.too_slow], deadline=None
)
@hypothesis.given(
    st.sampled_from([ChatCompletionRequest, CompletionRequest]),
    st.one_of(st.none(), st.lists(MESSAGE, min_size=1, max_size=3)),
    st.dictionaries(st.sampled_from(CHAT_FIELDS), CHAT_FIELD_VALUES),
)
def test_the_validation_shortcut_accepts_only_what_the_schema_accepts(
    schema: type[ChatCompletionRequest] | type[CompletionRequest],
    messages: list[Any] | None,
    fields: dict[str, Any],
) -> None:
    # `complete` skips the strict schema when `plainly_valid` says it would pass: it must never
    # let through a body the schema rejects (whose error message the client would then miss).
    body = _base(schema)
    if messages is not None and schema is ChatCompletionRequest:
        body["messages"] = messages
    body.update(fields)
    if plainly_valid(schema, body):
        validate(schema, body)


# Values of every JSON type, and of the commonest wrong shapes inside objects and arrays.
ANY_VALUES = [None, True, 0, 5, 21, -1, 2.5, "", "x", [], ["x"], [1], [{}], {}, {"a": "x"}]
ANY_VALUES += [{"include_usage": "x"}, {"include_usage": True}, {"50256": -100}]


@pytest.mark.parametrize("schema", [ChatCompletionRequest, CompletionRequest])
def test_the_validation_shortcut_passes_each_typed_field_only_when_the_schema_would(
    schema: type[ChatCompletionRequest] | type[CompletionRequest],
) -> None:
    # One field at a time, every field either schema types, so a field added to a schema is
    # covered here from the start (the hypothesis test above draws from a fixed few).
    typed = set(ChatCompletionRequest.model_fields) | set(CompletionRequest.model_fields)
    for name in sorted(typed):
        for value in ANY_VALUES:
            body = {**_base(schema), name: value}
            if plainly_valid(schema, body):
                validate(schema, body)
    for name in sorted(ChatMessage.model_fields) if schema is ChatCompletionRequest else ():
        for value in ANY_VALUES:
            body = {**_base(schema), "messages": [{"role": "tool", name: value}]}
            if plainly_valid(schema, body):
                validate(schema, body)


def test_the_validation_shortcut_takes_the_common_requests() -> None:
    chat = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "temperature": 0,
        "max_tokens": 64,
        "stream": True,
        "user": "u1",
    }
    assert plainly_valid(ChatCompletionRequest, chat)
    # An answer's message sent back as the SDK dumps it: its unused typed fields are null.
    answer = {"role": "assistant", "content": "Hello", "refusal": None, "tool_calls": None}
    assert plainly_valid(ChatCompletionRequest, {**chat, "messages": [*chat["messages"], answer]})
    assert plainly_valid(CompletionRequest, {"model": "m", "prompt": "Hi", "temperature": 0.7})
    assert not plainly_valid(CompletionRequest, chat)  # no prompt: the schema must word it
    assert not plainly_valid(ChatCompletionRequest, {"model": "m", "prompt": "Hi"})
