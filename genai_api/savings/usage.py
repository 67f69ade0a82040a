"""Token usage of an answer: the provider's `usage` when it sent one, else counted by us.

Savings are only as good as the token counts behind them, and some OpenAI-compatible
servers omit `usage`. Then the prompt and the answer are counted with tiktoken (each API
says what to count: `Api.count`), using the model's encoding from the models table
(`tokenizer`), else one picked from the model name (`TokenCounter.encoding_for_model`:
o200k_base or cl100k_base; cl100k_base for non-OpenAI models, a documented approximation).
Counted usage is marked `"estimated": true` in the stored entry; the response itself is
left exactly as the provider sent it. Large inputs are counted in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from genai_api.models.table import ModelInfo
from genai_api.savings.tokenizer import THREAD_OFFLOAD_THRESHOLD, TokenCounter

if TYPE_CHECKING:
    from genai_api.apis.base import Api


def estimated(prompt: int, completion: int | None) -> dict[str, Any]:
    """A counted usage in OpenAI's shape (`completion` None: an embedding, which has none)."""
    usage: dict[str, Any] = {"prompt_tokens": prompt}
    if completion is not None:
        usage["completion_tokens"] = completion
    usage["total_tokens"] = prompt + (completion or 0)
    usage["estimated"] = True
    return usage


def prompt_items(value: Any) -> list[str | list[int]]:
    """A completion `prompt` or embedding `input`: text, texts, token ids or lists of ids."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str | list)]
    return []


def count_items(
    tokens: TokenCounter, items: Sequence[str | list[int]], model: str, encoding: str | None
) -> int:
    """Tokens of texts and token arrays (an array counts as its length)."""
    return sum(
        len(item) if isinstance(item, list) else tokens.count_text(item, model, encoding)
        for item in items
    )


async def estimate_usage(
    api: Api, tokens: TokenCounter, model: ModelInfo, body: dict[str, Any], response: dict[str, Any]
) -> dict[str, Any]:
    """The usage of an answer the provider sent none for (large inputs counted off the loop)."""
    encoding = model.tokenizer if model.tokenizer in tokens.encodings else None
    # A tokenizer we do not ship (e.g. a Llama one) is None: the counter picks by name.
    args = (tokens, model.name, encoding, body, response)
    if api.size(body, response) > THREAD_OFFLOAD_THRESHOLD:
        return await asyncio.to_thread(api.count, *args)
    return api.count(*args)
