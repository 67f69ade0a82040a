"""Token usage of an answer: the provider's `usage` when it sent one, else counted by us.

Savings are only as good as the token counts behind them, and some OpenAI-compatible
servers omit `usage`. Then the prompt (chat messages, a completion prompt, embedding input)
and the answer text are counted with tiktoken, using the model's encoding from the models
table (`tokenizer`), else one picked from the model name (`TokenCounter.encoding_for_model`:
o200k_base or cl100k_base; cl100k_base for non-OpenAI models, a documented approximation).
Counted usage is marked `"estimated": true` in the stored entry; the response itself is
left exactly as the provider sent it. Large inputs are counted in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from genai_api.entry import Entry
from genai_api.models.table import ModelInfo
from genai_api.savings.tokenizer import THREAD_OFFLOAD_THRESHOLD, TokenCounter


def has_usage(usage: Any) -> bool:
    """A provider usage we can price: at least an integer `prompt_tokens`."""
    return isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int)


def _answer_texts(response: dict[str, Any]) -> Iterator[str]:
    """Every piece of generated text: message content, tool calls, completion text."""
    for choice in response.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        if isinstance(choice.get("text"), str):
            yield choice["text"]
        message = choice.get("message")
        if not isinstance(message, dict):
            continue
        for name in ("content", "reasoning_content", "refusal"):
            if isinstance(message.get(name), str):
                yield message[name]
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                for name in ("name", "arguments"):
                    if isinstance(function.get(name), str):
                        yield function[name]


def _prompt_items(value: Any) -> list[str | list[int]]:
    """A completion `prompt` or embedding `input`: text, texts, token ids or lists of ids."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str | list)]
    return []


def count_usage(
    tokens: TokenCounter,
    model: str,
    encoding: str | None,
    path: str,
    body: dict[str, Any],
    response: dict[str, Any],
) -> dict[str, Any]:
    """Usage counted with tiktoken, in OpenAI's shape (plus `"estimated": true`)."""
    if encoding not in tokens.encodings:
        encoding = None  # a tokenizer we do not ship (e.g. a Llama one): pick by name
    if path == "/chat/completions":
        prompt = tokens.count_chat_messages(body.get("messages") or [], model, encoding)
    else:
        items = _prompt_items(body.get("input" if path == "/embeddings" else "prompt"))
        prompt = sum(
            len(item) if isinstance(item, list) else tokens.count_text(item, model, encoding)
            for item in items
        )
    completion = sum(tokens.count_text(t, model, encoding) for t in _answer_texts(response))
    usage: dict[str, Any] = {"prompt_tokens": prompt}
    if path != "/embeddings":
        usage["completion_tokens"] = completion
    usage["total_tokens"] = prompt + completion
    usage["estimated"] = True
    return usage


def _size(body: dict[str, Any], response: dict[str, Any]) -> int:
    """Characters to count, roughly, to decide whether counting may block the loop."""
    n = sum(len(t) for t in _answer_texts(response))
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            n += len(content)
        elif isinstance(content, list):
            n += sum(len(str(p.get("text", ""))) for p in content if isinstance(p, dict))
    for name in ("prompt", "input"):
        n += sum(len(item) for item in _prompt_items(body.get(name)))
    return n


async def fill_usage(
    entry: Entry, tokens: TokenCounter, model: ModelInfo, path: str, body: dict[str, Any]
) -> None:
    """Give `entry` a usage when the provider sent none (large inputs counted off the loop)."""
    if has_usage(entry.usage):
        return
    args = (tokens, model.name, model.tokenizer, path, body, entry.response)
    if _size(body, entry.response) > THREAD_OFFLOAD_THRESHOLD:
        entry.usage = await asyncio.to_thread(count_usage, *args)
    else:
        entry.usage = count_usage(*args)
