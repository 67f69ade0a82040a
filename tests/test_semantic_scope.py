"""Which chat requests may be answered by meaning, and the scope that must match exactly."""

from __future__ import annotations

from typing import Any

import pytest

from genai_api.semantic.scope import query_of


def body(text: str = "Install numpy", **params: Any) -> dict[str, Any]:
    messages = params.pop("messages", [])
    return {"model": "m", "messages": [*messages, {"role": "user", "content": text}], **params}


def test_only_the_last_user_message_is_left_out_of_the_scope() -> None:
    a, b = query_of("chat", body("one"), "t"), query_of("chat", body("two"), "t")
    assert a is not None and b is not None
    assert a.scope == b.scope and (a.text, b.text) == ("one", "two")


@pytest.mark.parametrize(
    "other",
    [
        ("chat", body(), "u"),
        ("completions", body(), "t"),
        ("chat", body(temperature=0.5), "t"),
        ("chat", body(messages=[{"role": "system", "content": "Be brief."}]), "t"),
        ("chat", body(model="n"), "t"),
    ],
    ids=["tenant", "api", "parameter", "system-prompt", "model"],
)
def test_everything_else_is_in_the_scope(other: tuple[str, dict[str, Any], str]) -> None:
    mine, theirs = query_of("chat", body(), "t"), query_of(*other)
    assert mine is not None and theirs is not None and mine.scope != theirs.scope


@pytest.mark.parametrize(
    "request_body",
    [
        body(tools=[{"type": "function", "function": {"name": "f"}}]),
        body(tool_choice="none"),
        body(functions=[{"name": "f"}]),
        body(response_format={"type": "json_object"}),
        body(n=3),
        body(modalities=["text", "audio"]),
        body(audio={"voice": "alloy", "format": "wav"}),
        {"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}]},
        {"model": "m", "messages": [{"role": "user", "content": "a"},
                                    {"role": "assistant", "content": "b"}]},
        {"model": "m", "messages": [{"role": "user", "content": "a", "name": "bob"}]},
        {"model": "m", "messages": [{"role": "user", "content": "  "}]},
        {"model": "m", "prompt": "a completion"},
        {"model": "m", "input": "a Responses API request"},
    ],
    ids=["tools", "tool_choice", "functions", "response_format", "n", "audio-out", "audio",
         "image", "last-not-user", "named", "blank", "completions", "responses"],
)  # fmt: skip
def test_requests_that_are_never_compared_by_meaning(request_body: dict[str, Any]) -> None:
    assert query_of("chat", request_body, "t") is None


def test_text_parts_are_compared_as_their_text() -> None:
    parts = body(messages=[])
    parts["messages"][-1]["content"] = [{"type": "text", "text": "Install numpy"}]
    a, b = query_of("chat", parts, "t"), query_of("chat", body(), "t")
    assert a is not None and b is not None and (a.scope, a.text) == (b.scope, b.text)
