"""`POST /v1/responses` through the openai SDK, answered whole: cached by chat's rules
(CONTRACT §8), its usage priced as prompt and completion tokens, its bad input refused."""

from __future__ import annotations

from typing import Any

import httpx
import hypothesis
import orjson
import pytest
import respx
from hypothesis import strategies as st

from bench import fake_responses
from genai_api.apis.response_items import output_texts, prompt_messages
from genai_api.apis.responses import ResponsesRequest, plainly_valid
from genai_api.apis.schema import validate
from genai_api.savings.tokenizer import TokenCounter
from tests.conftest import make_settings, running
from tests.endpoints import assert_envelope, stored_keys
from tests.responses_client import REASONING, REQUEST, TOOL_CALL, TOOLS, whole_route


def fake_route(upstream: respx.MockRouter) -> respx.Route:
    """The provider answering each request as the fake upstream does (per body)."""
    return upstream.post("/responses").mock(
        side_effect=lambda request: httpx.Response(
            200, json=fake_responses.response(orjson.loads(request.content))
        )
    )


async def test_miss_then_hit_through_the_sdk(upstream: respx.MockRouter) -> None:
    route = fake_route(upstream)
    async with running(make_settings()) as gw:
        miss = await gw.client.responses.with_raw_response.create(**REQUEST)
        hit = await gw.client.responses.with_raw_response.create(**REQUEST)
    assert route.call_count == 1
    assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")
    assert hit.headers["x-cache-key"] == miss.headers["x-cache-key"]
    assert hit.headers["x-cache-saved-tokens"] == "32"  # input 21 + output 11
    assert hit.parse().output_text == miss.parse().output_text
    assert hit.parse().id == miss.parse().id
    assert hit.http_response.content == miss.http_response.content


async def test_usage_is_priced_as_prompt_and_completion_tokens(
    upstream: respx.MockRouter,
) -> None:
    fake_route(upstream)
    async with running(make_settings()) as gw:
        await gw.client.responses.create(**REQUEST)
        hit = await gw.client.responses.with_raw_response.create(**REQUEST)
        stats = (await gw.http.get("/v1/cache/stats")).json()
        metrics = (await gw.http.get("/metrics")).text
    assert stats["tokens_saved"] == {"prompt": 21, "completion": 11, "total": 32}
    # gpt-4o-mini: 21 * $0.15/1M + 11 * $0.60/1M
    assert hit.headers["x-cache-saved-cost-usd"] == "0.00000975"
    assert stats["by_model"]["gpt-4o-mini"]["hits"] == 1
    assert 'endpoint="responses",model="gpt-4o-mini",status="200"' in metrics.replace(
        'cache="hit",', ""
    )
    assert 'genai_requests_total{cache="hit",endpoint="responses"' in metrics


@pytest.mark.parametrize(
    "other",
    [
        {"store": False},
        {"metadata": {"run": "2"}},
        {"user": "someone"},
        {"stream_options": {"include_obfuscation": False}},
        {"cache": {"ttl": 60}},
        {"temperature": 1},  # the default, said out loud
    ],
    ids=["store", "metadata", "user", "stream_options", "cache", "default-temperature"],
)
async def test_fields_that_do_not_change_the_output_share_an_entry(
    upstream: respx.MockRouter, other: dict[str, Any]
) -> None:
    route = fake_route(upstream)
    async with running(make_settings()) as gw:
        await gw.http.post("/v1/responses", json=REQUEST)
        again = await gw.http.post("/v1/responses", json={**REQUEST, **other})
    assert again.headers["x-cache"] == "HIT"
    assert route.call_count == 1


@pytest.mark.parametrize(
    "other",
    [
        {"instructions": "Be brief."},
        {"previous_response_id": "resp_earlier"},
        {"include": ["message.output_text.logprobs"]},
        {"tools": TOOLS},
        {"tool_choice": "none"},
        {"reasoning": {"effort": "high"}},
        {"text": {"format": {"type": "json_object"}}},
        {"max_output_tokens": 50},
        {"temperature": 0},
        {"input": [{"role": "user", "content": "Say hello"}]},
        {"model": "gpt-4o"},
        {"prompt_cache_key": "k1"},
    ],
    ids=lambda other: next(iter(other)),
)
async def test_each_output_changing_field_has_its_own_entry(
    upstream: respx.MockRouter, other: dict[str, Any]
) -> None:
    route = fake_route(upstream)
    async with running(make_settings()) as gw:
        first = await gw.http.post("/v1/responses", json=REQUEST)
        second = await gw.http.post("/v1/responses", json={**REQUEST, **other})
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "MISS")
    assert first.headers["x-cache-key"] != second.headers["x-cache-key"]
    assert route.call_count == 2


@pytest.mark.parametrize(
    "stateful",
    [{"conversation": "conv_123"}, {"conversation": {"id": "conv_123"}}, {"background": True}],
    ids=["conversation-id", "conversation-object", "background"],
)
async def test_conversation_and_background_requests_bypass_the_cache(
    upstream: respx.MockRouter, stateful: dict[str, Any]
) -> None:
    route = fake_route(upstream)
    async with running(make_settings()) as gw:
        answers = [await gw.http.post("/v1/responses", json={**REQUEST, **stateful}) for _ in "ab"]
        keys = stored_keys(gw)
    assert [a.headers["x-cache"] for a in answers] == ["BYPASS", "BYPASS"]
    assert route.call_count == 2
    assert keys == []


async def test_background_false_is_cached(upstream: respx.MockRouter) -> None:
    route = fake_route(upstream)
    async with running(make_settings()) as gw:
        for _ in "ab":
            answer = await gw.http.post("/v1/responses", json={**REQUEST, "background": False})
    assert answer.headers["x-cache"] == "HIT"
    assert route.call_count == 1


@pytest.mark.parametrize("status", ["incomplete", "failed"])
async def test_an_unfinished_whole_response_is_relayed_and_never_stored(
    upstream: respx.MockRouter, status: str
) -> None:
    response = {**fake_responses.response(REQUEST), "status": status}
    response["incomplete_details"] = {"reason": "max_output_tokens"}
    route = whole_route(upstream, response)
    async with running(make_settings()) as gw:
        answers = [await gw.client.responses.with_raw_response.create(**REQUEST) for _ in "ab"]
        keys = stored_keys(gw)
    assert [a.headers["x-cache"] for a in answers] == ["MISS", "MISS"]
    assert answers[0].parse().status == status
    assert route.call_count == 2
    assert keys == []


async def test_tool_calls_and_reasoning_items_are_served_whole_from_the_cache(
    upstream: respx.MockRouter,
) -> None:
    fake_route(upstream)
    body = {**TOOL_CALL, "reasoning": REASONING["reasoning"], "model": "o4-mini"}
    async with running(make_settings()) as gw:
        miss = await gw.client.responses.create(**body)
        hit = await gw.client.responses.with_raw_response.create(**body)
    assert hit.headers["x-cache"] == "HIT"
    answer = hit.parse()
    assert [item.type for item in answer.output] == ["reasoning", "function_call"]
    call = answer.output[1]
    assert call.type == "function_call" and call.name == "search"
    assert orjson.loads(call.arguments)["limit"] == 3
    reasoning = answer.output[0]
    assert reasoning.type == "reasoning"
    assert [s.text for s in reasoning.summary][1] == "Then deciding."
    assert answer.model_dump() == miss.model_dump()


async def test_usage_is_counted_with_tiktoken_when_the_server_sends_none(
    upstream: respx.MockRouter,
) -> None:
    body = {
        "model": "gpt-4o-mini",
        "instructions": "Answer in French.",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "weather",
                "arguments": '{"city": "Paris"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "18 C, sunny"},
        ],
    }
    response = fake_responses.response({**TOOL_CALL, "reasoning": {"summary": "auto"}})
    response.pop("usage")
    whole_route(upstream, response)
    async with running(make_settings()) as gw:
        await gw.client.responses.create(**body)
        hit = await gw.client.responses.with_raw_response.create(**body)
        stats = (await gw.http.get("/v1/cache/stats")).json()
    tokens = TokenCounter.load()
    messages = prompt_messages(body)
    assert [m["role"] for m in messages] == ["developer", "user", "assistant", "tool"]
    prompt = tokens.count_chat_messages(messages, "gpt-4o-mini")
    texts = list(output_texts(response))
    assert "Then deciding." in texts and "search" in texts  # summaries, the call's name
    completion = sum(tokens.count_text(t, "gpt-4o-mini") for t in texts)
    assert stats["tokens_saved"] == {
        "prompt": prompt,
        "completion": completion,
        "total": prompt + completion,
    }
    assert hit.headers["x-cache-saved-tokens"] == str(prompt + completion)
    assert "usage" not in orjson.loads(hit.http_response.content)  # the answer as sent


async def test_entries_are_scoped_to_their_tenant(upstream: respx.MockRouter) -> None:
    route = fake_route(upstream)
    settings = make_settings(gateway_api_keys="key-a,key-b")
    async with running(settings) as gw:
        seen = []
        for key in ("key-a", "key-b", "key-a", "key-b"):
            answer = await gw.http.post(
                "/v1/responses", json=REQUEST, headers={"Authorization": f"Bearer {key}"}
            )
            seen.append(answer.headers["x-cache"])
    assert seen == ["MISS", "MISS", "HIT", "HIT"]
    assert route.call_count == 2


async def test_the_unprefixed_path_is_the_same_endpoint(upstream: respx.MockRouter) -> None:
    route = fake_route(upstream)
    async with running(make_settings()) as gw:
        first = await gw.http.post("/v1/responses", json=REQUEST)
        second = await gw.http.post("/responses", json=REQUEST)
    assert second.headers["x-cache"] == "HIT"
    assert second.content == first.content
    assert route.call_count == 1


# --- bad input


GOOD_ITEMS = [
    {"role": "user", "content": "hi"},
    {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "x"}]},
    {"type": "function_call_output", "call_id": "c1", "output": "42"},
    {"type": "item_reference", "id": "msg_1"},
]


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"model": 5}, "model"),
        ({"input": 3}, "input"),
        ({"input": [{"role": "wizard", "content": "x"}]}, "input.0.role"),
        ({"input": [{"role": "user", "content": 7}]}, "input.0.content"),
        ({"input": ["hello"]}, "input.0"),
        ({"input": [{"type": "function_call", "arguments": {"a": 1}}]}, "input.0.arguments"),
        ({"instructions": ["be brief"]}, "instructions"),
        ({"tools": {"type": "function"}}, "tools"),
        ({"tools": ["search"]}, "tools.0"),
        ({"tool_choice": 1}, "tool_choice"),
        ({"text": "json"}, "text"),
        ({"reasoning": "high"}, "reasoning"),
        ({"max_output_tokens": "100"}, "max_output_tokens"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 3}, "temperature"),
        ({"top_p": 2}, "top_p"),
        ({"parallel_tool_calls": "yes"}, "parallel_tool_calls"),
        ({"previous_response_id": 12}, "previous_response_id"),
        ({"store": "false"}, "store"),
        ({"stream": "true"}, "stream"),
        ({"stream_options": {"include_obfuscation": "no"}}, "stream_options.include_obfuscation"),
        ({"truncation": True}, "truncation"),
        ({"include": "reasoning.encrypted_content"}, "include"),
        ({"metadata": {"n": 1}}, "metadata.n"),
        ({"user": 1}, "user"),
        ({"prompt_cache_key": 1}, "prompt_cache_key"),
        ({"safety_identifier": ["u"]}, "safety_identifier"),
        ({"service_tier": 1}, "service_tier"),
        ({"top_logprobs": -1}, "top_logprobs"),
        ({"top_logprobs": "5"}, "top_logprobs"),
        ({"background": "true"}, "background"),
        ({"conversation": 12}, "conversation"),
        ({"max_tool_calls": "3"}, "max_tool_calls"),
        ({"prompt": "p_123"}, "prompt"),
        ({"cache": "no-store"}, "cache"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
async def test_a_wrong_type_is_400_naming_the_parameter_and_never_stored(
    upstream: respx.MockRouter, change: dict[str, Any], param: str
) -> None:
    route = fake_route(upstream)
    async with running(make_settings()) as gw:
        answer = await gw.http.post("/v1/responses", json={**REQUEST, **change})
        keys = stored_keys(gw)
    error = assert_envelope(answer, 400)
    assert error["param"] == param, error
    assert error["type"] == "invalid_request_error"
    assert route.call_count == 0
    assert keys == []


async def test_valid_input_items_of_every_kind_are_served(upstream: respx.MockRouter) -> None:
    route = fake_route(upstream)
    async with running(make_settings()) as gw:
        answer = await gw.http.post("/v1/responses", json={**REQUEST, "input": GOOD_ITEMS})
    assert answer.status_code == 200, answer.text
    assert orjson.loads(route.calls.last.request.content)["input"] == GOOD_ITEMS


async def test_parameters_the_schema_does_not_name_reach_the_provider(
    upstream: respx.MockRouter,
) -> None:
    route = fake_route(upstream)
    async with running(make_settings()) as gw:
        answer = await gw.http.post("/v1/responses", json={**REQUEST, "vendor_knob": [1, 2]})
    assert answer.status_code == 200
    assert orjson.loads(route.calls.last.request.content)["vendor_knob"] == [1, 2]


async def test_missing_model_is_400(upstream: respx.MockRouter) -> None:
    async with running(make_settings()) as gw:
        answer = await gw.http.post("/v1/responses", json={"input": "hi"})
    assert assert_envelope(answer, 400)["param"] == "model"


async def test_unknown_model_on_a_closed_table_is_404(
    upstream: respx.MockRouter, tmp_path: Any
) -> None:
    route = fake_route(upstream)
    models = tmp_path / "models.toml"
    models.write_text('closed = true\n\n[models."gpt-4o-mini"]\nttl = 60\n')
    async with running(make_settings(models_file=models)) as gw:
        answer = await gw.http.post("/v1/responses", json={**REQUEST, "model": "gpt-9"})
        allowed = await gw.http.post("/v1/responses", json=REQUEST)
    assert assert_envelope(answer, 404)["param"] == "model"
    assert allowed.status_code == 200
    assert route.call_count == 1


async def test_a_body_over_the_limit_is_413(upstream: respx.MockRouter) -> None:
    route = fake_route(upstream)
    async with running(make_settings(max_request_bytes=2048)) as gw:
        answer = await gw.http.post("/v1/responses", json={**REQUEST, "input": "x" * 4096})
    assert_envelope(answer, 413)
    assert route.call_count == 0


ITEM = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "developer", "system", "assistant", "tool", "", 1, None])},
    optional={
        "content": st.one_of(st.none(), st.text(max_size=3), st.integers(), st.just([{}])),
        "type": st.sampled_from(["message", "function_call", None, 1]),
        "name": st.one_of(st.none(), st.text(max_size=2), st.integers()),
    },
)
FIELD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False),
    st.sampled_from([0, 1, 2, 2.0001, -0.5, 10_000_000, 10_000_001, "", "m", "x" * 257]),
    st.text(max_size=3),
    st.lists(st.one_of(ITEM, st.none(), st.text(max_size=2)), max_size=3),
    st.dictionaries(st.text(max_size=2), st.none(), max_size=1),
)
FIELDS = ("model", "input", "instructions", "temperature", "top_p", "max_output_tokens",
          "stream", "user", "cache", "store", "metadata", "other")  # fmt: skip


@hypothesis.settings(
    max_examples=600, suppress_health_check=[hypothesis.HealthCheck.too_slow], deadline=None
)
@hypothesis.given(
    st.one_of(st.none(), st.lists(ITEM, min_size=1, max_size=3)),
    st.dictionaries(st.sampled_from(FIELDS), FIELD_VALUES),
)
def test_the_plain_body_shortcut_never_passes_what_the_schema_refuses(
    items: list[Any] | None, fields: dict[str, Any]
) -> None:
    body = {**REQUEST, **fields}
    if items is not None:
        body["input"] = items
    if plainly_valid(body):
        validate(ResponsesRequest, body)


def test_the_shortcut_passes_each_typed_field_only_when_the_schema_would() -> None:
    values = [None, True, 0, 5, -1, 2.5, "", "x", [], ["x"], [1], [{}], {}, {"a": "x"}]
    values += [[{"role": r, "content": "x"}] for r in ("user", "tool", "")]
    values += [[{"role": "user", "content": "x", "n": 1}]]
    for name in sorted(ResponsesRequest.model_fields):
        for value in values:
            body = {**REQUEST, name: value}
            if plainly_valid(body):
                validate(ResponsesRequest, body)
    plain = [
        REQUEST,
        {**REQUEST, "instructions": "x", "temperature": 0, "max_output_tokens": 5},
        {
            **REQUEST,
            "input": [
                {"role": "user", "content": "hi"},
                {"type": "message", "role": "assistant", "content": "yo"},
            ],
            "stream": True,
        },
    ]
    assert all(plainly_valid(body) for body in plain)
