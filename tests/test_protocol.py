"""The standard OpenAI parameters have the types of OpenAI's API reference.

A wrong type is refused before any provider call and stores nothing (a lax upstream, or
the mock, would answer it, and the answer would be cached); the right types, `null`, and
parameters no schema names (a vendor's own) reach the provider as the client sent them.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import respx

from tests.conftest import make_settings, running
from tests.endpoints import COMPLETION_ENDPOINTS, Endpoint, assert_envelope, stored_keys

CHAT, COMPLETIONS, PROMPT, _RESPONSES = COMPLETION_ENDPOINTS

TOOL = {
    "type": "function",
    "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}},
}
CALL = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}


def _chat_messages(*messages: dict[str, Any]) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "Weather?"}, *messages]}


BAD = [
    (CHAT, {"tools": "nope"}, "tools"),
    (CHAT, {"tools": ["nope"]}, "tools.0"),
    (CHAT, {"tool_choice": 5}, "tool_choice"),
    (CHAT, {"parallel_tool_calls": "yes"}, "parallel_tool_calls"),
    (CHAT, {"functions": 1}, "functions"),
    (CHAT, {"function_call": 5}, "function_call"),
    (CHAT, {"response_format": 5}, "response_format"),
    (CHAT, {"response_format": "json_object"}, "response_format"),
    (CHAT, {"logit_bias": [1, 2]}, "logit_bias"),
    (CHAT, {"logit_bias": {"50256": "-100"}}, "logit_bias.50256"),
    (CHAT, {"logprobs": "yes"}, "logprobs"),
    (CHAT, {"logprobs": 1}, "logprobs"),
    (CHAT, {"top_logprobs": "x"}, "top_logprobs"),
    (CHAT, {"top_logprobs": -1}, "top_logprobs"),
    (CHAT, {"reasoning_effort": 7}, "reasoning_effort"),
    (CHAT, {"verbosity": True}, "verbosity"),
    (CHAT, {"service_tier": 1}, "service_tier"),
    (CHAT, {"modalities": 1}, "modalities"),
    (CHAT, {"modalities": [1]}, "modalities.0"),
    (CHAT, {"audio": "alloy"}, "audio"),
    (CHAT, {"prediction": "text"}, "prediction"),
    (CHAT, {"stream_options": {"include_usage": "maybe"}}, "stream_options.include_usage"),
    (CHAT, {"stream": True, "stream_options": True}, "stream_options"),
    (
        CHAT,
        _chat_messages({"role": "assistant", "content": None, "tool_calls": "x"}),
        "messages.1.tool_calls",
    ),
    (
        CHAT,
        _chat_messages(
            {"role": "assistant", "tool_calls": [CALL]},
            {"role": "tool", "content": "sunny", "tool_call_id": 1},
        ),
        "messages.2.tool_call_id",
    ),
    (PROMPT, {"tools": "nope"}, "tools"),
    (COMPLETIONS, {"prompt": []}, "prompt"),
    (COMPLETIONS, {"prompt": [[]]}, "prompt"),
    (COMPLETIONS, {"prompt": [15496, -1]}, "prompt"),
    (COMPLETIONS, {"prompt": [[15496], [2**31]]}, "prompt"),
    (COMPLETIONS, {"suffix": 1}, "suffix"),
    (COMPLETIONS, {"echo": "yes"}, "echo"),
    (COMPLETIONS, {"logprobs": True}, "logprobs"),
    (COMPLETIONS, {"logprobs": -1}, "logprobs"),
    (COMPLETIONS, {"logit_bias": {"50256": None}}, "logit_bias.50256"),
]


@pytest.mark.parametrize(
    ("ep", "fields", "param"),
    BAD,
    ids=[f"{ep.name}-{param}-{i}" for i, (ep, _, param) in enumerate(BAD)],
)
async def test_a_wrongly_typed_parameter_is_400_naming_it_and_stores_nothing(
    upstream: respx.MockRouter, ep: Endpoint, fields: dict[str, Any], param: str
) -> None:
    route = ep.mock(upstream)
    async with running(make_settings()) as gw:
        answer = await gw.http.post(ep.path, json={**ep.body, **fields})
        stored = stored_keys(gw)
    error = assert_envelope(answer, 400)
    assert (error["param"], error["code"]) == (param, "invalid_value")
    assert param in error["message"]
    assert route.call_count == 0
    assert stored == []


@pytest.mark.parametrize(
    ("ep", "fields", "reason"),
    [
        (CHAT, {"tool_choice": 5}, "'tool_choice': Input should be a valid string, or a valid"),
        (COMPLETIONS, {"prompt": 5}, "'prompt': Input should be a valid string, or a valid list"),
    ],
    ids=["tool_choice", "prompt"],
)
async def test_a_parameter_of_several_types_is_refused_naming_each_type(
    upstream: respx.MockRouter, ep: Endpoint, fields: dict[str, Any], reason: str
) -> None:
    ep.mock(upstream)
    async with running(make_settings()) as gw:
        answer = await gw.http.post(ep.path, json={**ep.body, **fields})
    assert reason in assert_envelope(answer, 400)["message"]


GOOD = [
    (
        CHAT,
        {
            **_chat_messages(
                {"role": "assistant", "content": None, "refusal": None, "tool_calls": [CALL]},
                {"role": "tool", "content": "sunny", "tool_call_id": "call_1"},
            ),
            "tools": [TOOL],
            "tool_choice": {"type": "function", "function": {"name": "weather"}},
            "parallel_tool_calls": False,
            "response_format": {"type": "json_schema", "json_schema": {"name": "w"}},
            "logit_bias": {"50256": -100, "1734": 2.5},
            "logprobs": True,
            "top_logprobs": 20,
            "reasoning_effort": "a-level-named-next-month",
            "verbosity": "low",
            "service_tier": "flex",
            "modalities": ["text"],
            "prediction": {"type": "content", "content": "It is"},
            "metadata": {"run": "7"},
            "top_k": 40,  # a vendor's (vLLM's) own parameter
            "chat_template_kwargs": {"enable_thinking": False},
        },
    ),
    (
        CHAT,
        {
            "tool_choice": "auto",
            "functions": [TOOL["function"]],
            "function_call": "none",
            "audio": {"voice": "alloy", "format": "wav"},
            "stream_options": {"include_usage": None, "include_obfuscation": False},
        },
    ),
    (
        CHAT,
        {
            name: None
            for name in (
                "tools",
                "tool_choice",
                "parallel_tool_calls",
                "functions",
                "function_call",
                "response_format",
                "logit_bias",
                "logprobs",
                "top_logprobs",
                "reasoning_effort",
                "verbosity",
                "service_tier",
                "modalities",
                "audio",
                "prediction",
                "stream_options",
            )
        },
    ),
    (PROMPT, {"response_format": {"type": "text"}, "top_k": 40}),
    (
        COMPLETIONS,
        {
            "prompt": ["Say", "hello"],
            "suffix": "!",
            "echo": True,
            "logprobs": 5,
            "logit_bias": {"50256": -100},
            "best_of": 2,
            "repetition_penalty": 1.1,
        },
    ),
    (COMPLETIONS, {"prompt": [15496, 11], "logprobs": 0}),
    (COMPLETIONS, {"prompt": "Once", "logprobs": 10}),  # past OpenAI's 5, within vLLM's 20
    (COMPLETIONS, {"prompt": [[15496], [11, 995]], "suffix": None, "logprobs": None}),
]


@pytest.mark.parametrize(
    ("ep", "fields"), GOOD, ids=[f"{ep.name}-{i}" for i, (ep, _) in enumerate(GOOD)]
)
async def test_well_typed_and_unknown_parameters_reach_the_provider_as_sent(
    upstream: respx.MockRouter, ep: Endpoint, fields: dict[str, Any]
) -> None:
    route = ep.mock(upstream)
    body = {**ep.body, **fields}
    async with running(make_settings()) as gw:
        first = await gw.http.post(ep.path, json=body)
        again = await gw.http.post(ep.path, json=body)
    assert first.status_code == 200, first.text
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("MISS", "HIT")
    sent = orjson.loads(route.calls[0].request.content)
    if ep is PROMPT:  # the template writes the messages and its own parameters
        sent = {name: sent[name] for name in fields}
        body = fields
    assert sent == body
