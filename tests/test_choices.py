"""Chat and completion chunks ⇄ whole completions (`apis.choices`): everything a stream
carries survives both directions."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from genai_api.apis.choices import (
    assemble,
    for_client,
    synthesize,
    upstream_body,
    wants_usage,
)
from genai_api.errors import IncompleteStream

META = {"id": "c1", "created": 5, "model": "m", "system_fingerprint": "fp"}
USAGE = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}


def chat(*choices: dict[str, Any], usage: Any = None) -> dict[str, Any]:
    return {**META, "object": "chat.completion.chunk", "choices": list(choices), "usage": usage}


def delta(index: int = 0, finish: str | None = None, logprobs: Any = None, **fields: Any) -> Any:
    return {"index": index, "delta": fields, "logprobs": logprobs, "finish_reason": finish}


def text(piece: str, finish: str | None = None, logprobs: Any = None) -> dict[str, Any]:
    choice = {"index": 0, "text": piece, "logprobs": logprobs, "finish_reason": finish}
    return {**META, "object": "text_completion", "choices": [choice]}


def test_assemble_joins_content_and_keeps_metadata_finish_and_usage() -> None:
    whole = assemble(
        [
            chat(delta(role="assistant", content="")),
            chat(delta(content="Hel")),
            chat(delta(content="lo")),
            chat(delta(finish="stop")),
            chat(usage=USAGE),
        ]
    )
    assert whole == {
        **META,
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    }


def test_tool_call_fragments_join_per_index_even_interleaved() -> None:
    first = {"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": ""}}
    second = {
        "index": 1,
        "id": "b",
        "type": "function",
        "function": {"name": "g", "arguments": "{"},
    }
    whole = assemble(
        [
            chat(delta(role="assistant", content=None, tool_calls=[first])),
            chat(delta(tool_calls=[second])),
            chat(delta(tool_calls=[{"index": 0, "function": {"arguments": '{"x":'}}])),
            chat(delta(tool_calls=[{"index": 1, "id": "b", "function": {"arguments": "}"}}])),
            chat(delta(tool_calls=[{"index": 0, "function": {"arguments": " 1}"}}])),
            chat(delta(finish="tool_calls")),
        ]
    )
    message = whole["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
        {"id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]


def test_reasoning_refusal_and_logprobs_are_joined() -> None:
    token = {"token": "x", "logprob": -1.0, "bytes": [120], "top_logprobs": []}
    whole = assemble(
        [
            chat(delta(role="assistant", reasoning_content="Think")),
            chat(delta(reasoning_content="ing.")),
            chat(delta(refusal="No")),
            chat(delta(refusal="pe.", logprobs={"content": None, "refusal": [token]})),
            chat(
                {
                    "index": 0,
                    "delta": {"refusal": "!"},
                    "logprobs": {"content": None, "refusal": [token, token]},
                    "finish_reason": "stop",
                }
            ),
        ]
    )
    choice = whole["choices"][0]
    assert choice["message"]["reasoning_content"] == "Thinking."
    assert choice["message"]["refusal"] == "Nope.!"
    assert choice["logprobs"] == {"content": None, "refusal": [token, token, token]}


def test_n_choices_come_back_in_index_order() -> None:
    whole = assemble(
        [
            chat(delta(1, content="B")),
            chat(delta(0, content="A")),
            chat(delta(1, finish="stop"), delta(0, finish="length")),
        ]
    )
    assert [
        (c["index"], c["message"]["content"], c["finish_reason"]) for c in whole["choices"]
    ] == [
        (0, "A", "length"),
        (1, "B", "stop"),
    ]


def test_legacy_completion_text_and_logprobs_are_joined() -> None:
    lp = {
        "tokens": ["a"],
        "token_logprobs": [-1.0],
        "top_logprobs": [{"a": -1.0}],
        "text_offset": [0],
    }
    whole = assemble([text("a", logprobs=lp), text("b", "stop", logprobs=lp)])
    choice = whole["choices"][0]
    assert whole["object"] == "text_completion"
    assert choice["text"] == "ab"
    assert choice["logprobs"]["tokens"] == ["a", "a"]
    assert choice["logprobs"]["text_offset"] == [0, 0]


def test_provider_extras_on_a_choice_survive() -> None:
    finish = {**delta(finish="stop"), "stop_reason": "</s>"}
    assert assemble([chat(finish)])["choices"][0]["stop_reason"] == "</s>"


@pytest.mark.parametrize(
    "chunks",
    [[], [chat(delta(content="Hi"))], [chat(delta(0, finish="stop"), delta(1, content="x"))]],
    ids=["empty", "no-finish", "one-choice-unfinished"],
)
def test_unfinished_stream_does_not_assemble(chunks: list[dict[str, Any]]) -> None:
    with pytest.raises(IncompleteStream):
        assemble(chunks)


def test_synthesized_stream_assembles_back_to_the_same_completion() -> None:
    response = {
        **META,
        "object": "chat.completion",
        "service_tier": "default",
        "choices": [
            {
                "index": i,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "refusal": None,
                    "reasoning_content": "why",
                    "tool_calls": [
                        {
                            "id": "t",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                "logprobs": {"content": [{"token": "a", "logprob": 0.0}], "refusal": None},
                "finish_reason": "tool_calls",
            }
            for i in range(2)
        ],
        "usage": USAGE,
    }
    original = copy.deepcopy(response)
    chunks = synthesize(response)
    assert response == original  # the stored entry is not modified
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == USAGE
    assert assemble(chunks) == response


def test_synthesized_legacy_stream_assembles_back() -> None:
    response = {
        **META,
        "object": "text_completion",
        "choices": [{"index": 0, "text": "hey", "logprobs": None, "finish_reason": "stop"}],
        "usage": USAGE,
    }
    assert assemble(synthesize(response)) == response


def test_for_client_withholds_usage_unless_asked() -> None:
    usage_chunk = chat(usage=USAGE)
    content = chat(delta(content="x"))
    assert for_client(usage_chunk, include_usage=False) is None
    assert "usage" not in (for_client(content, include_usage=False) or {})
    assert for_client(usage_chunk, include_usage=True) == usage_chunk
    assert for_client(content, include_usage=True) == content


def test_upstream_body_always_asks_for_usage_and_keeps_other_options() -> None:
    body = {"model": "m", "stream": True, "stream_options": {"include_obfuscation": False}}
    sent = upstream_body(body)
    assert sent["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert body["stream_options"] == {"include_obfuscation": False}
    assert not wants_usage(body)
    assert wants_usage({"stream_options": {"include_usage": True}})


def test_chat_chunks_without_object_are_still_chat() -> None:
    chunks = [chat(delta(role="assistant", content="Hi")), chat(delta(finish="stop"))]
    for c in chunks:
        del c["object"]
    whole = assemble(chunks)
    assert whole["object"] == "chat.completion"
    assert whole["choices"][0]["message"]["content"] == "Hi"
