"""The text of Responses API items, for counting tokens when a server sends no usage.

Input and output share one item vocabulary: messages (text, refusal and output-text
parts), function and custom tool calls and their outputs, reasoning items (summaries and
reasoning text). `prompt_messages` turns a request's `instructions` and `input` into
chat-like messages, so the prompt is counted by OpenAI's per-message formula as chat's is
(`TokenCounter.count_chat_messages`); `output_texts` is every piece of generated text,
counted as completion tokens. Images, files and audio are billed otherwise and not
counted (as for chat).

    >>> prompt_messages({"instructions": "Be brief.", "input": "Hi"})
    [{'role': 'developer', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'}]
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# Item types whose text is a model's (counted as the assistant's when they come as input).
_ASSISTANT = frozenset({"function_call", "custom_tool_call", "reasoning"})
_TOOL = frozenset({"function_call_output", "custom_tool_call_output"})


def item_texts(item: Any) -> Iterator[str]:
    """Every piece of text an item holds."""
    if not isinstance(item, dict):
        return
    for name in ("name", "arguments", "input"):
        if item.get("type") in _ASSISTANT and isinstance(item.get(name), str):
            yield item[name]
    for name in ("content", "output", "summary"):
        yield from _texts(item.get(name))


def _texts(value: Any) -> Iterator[str]:
    """A string, or the text of a list of parts (`text` and `refusal` fields)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for part in value:
            if isinstance(part, dict):
                for name in ("text", "refusal"):
                    if isinstance(part.get(name), str):
                        yield part[name]


def prompt_messages(body: dict[str, Any]) -> list[dict[str, str]]:
    """`instructions` and `input` as chat-like messages (role and joined text)."""
    messages: list[dict[str, str]] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        messages.append({"role": "developer", "content": instructions})
    given = body.get("input")
    if isinstance(given, str):
        messages.append({"role": "user", "content": given})
    elif isinstance(given, list):
        for item in given:
            if not isinstance(item, dict):
                continue
            kind = item.get("type")
            role = item.get("role")
            if not isinstance(role, str):
                role = "assistant" if kind in _ASSISTANT else "tool" if kind in _TOOL else None
            if role is not None:
                messages.append({"role": role, "content": "".join(item_texts(item))})
    return messages


def output_texts(response: dict[str, Any]) -> Iterator[str]:
    """Every piece of generated text: output text, refusals, function-call names and
    arguments, custom tool inputs, reasoning summaries and text."""
    for item in response.get("output") or ():
        yield from item_texts(item)


def prompt_chars(body: dict[str, Any]) -> int:
    return sum(len(m["content"]) for m in prompt_messages(body))
