"""One embeddings request upstream: provider-sized chunks, answer checks, usage per input.

OpenAI takes at most 2,048 inputs and 300,000 tokens per embeddings call, so a bigger set of
missing inputs is split into consecutive chunks within both limits and sent concurrently.
The provider bills a chunk as a whole; each input's share is its count by our tokenizer,
scaled so the shares sum to what the provider billed (`apportion`): saved tokens are then
exact per input even when our tokenizer is not the provider's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from tiktoken import Encoding

from genai_api.embeddings.vectors import VectorEntry, from_provider
from genai_api.errors import ProviderError

Item = str | list[int]
Upstream = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]

PATH = "/embeddings"
CHUNK_INPUTS = 2048  # OpenAI's limit of inputs per embeddings request
CHUNK_TOKENS = 300_000  # OpenAI's limit of tokens per embeddings request, summed over inputs
_OFFLOAD_CHARS = 64 * 1024  # count tokens in a thread past this much text


def apportion(counts: Sequence[int], total: int | None) -> list[int]:
    """Split the provider's `total` over inputs in proportion to our own `counts`.

    Our tokenizer may not be the provider's; the shares always sum to what it billed.
    """
    if total is None or total < 0 or total == sum(counts):
        return list(counts)
    whole = sum(counts)
    if whole == 0:
        base, extra = divmod(total, len(counts))
        return [base + (i < extra) for i in range(len(counts))]
    parts = [divmod(c * total, whole) for c in counts]
    shares = [q for q, _ in parts]
    by_remainder = sorted(range(len(counts)), key=lambda i: -parts[i][1])
    for i in by_remainder[: total - sum(shares)]:
        shares[i] += 1
    return shares


def chunks(counts: Sequence[int]) -> list[range]:
    """Consecutive index ranges within the provider's input and token limits."""
    out: list[range] = []
    start = tokens = 0
    for i, n in enumerate(counts):
        if i > start and (i - start >= CHUNK_INPUTS or tokens + n > CHUNK_TOKENS):
            out.append(range(start, i))
            start, tokens = i, 0
        tokens += n
    if start < len(counts):
        out.append(range(start, len(counts)))
    return out


async def fetch_vectors(
    upstream: Upstream, body: dict[str, Any], items: list[Item], encoding: Encoding | None
) -> tuple[list[VectorEntry | None], BaseException | None]:
    """Fresh entries for `items` (None where a chunk failed) and the first chunk's error.

    Chunks run concurrently; `upstream` (the pipeline's) bounds how many are in flight.
    """
    if not items:
        return [], None
    counts = await count_tokens(items, encoding)
    spans = chunks(counts)
    results = await asyncio.gather(
        *(_chunk(upstream, body, [items[i] for i in s], [counts[i] for i in s]) for s in spans),
        return_exceptions=True,
    )
    entries: list[VectorEntry | None] = []
    error: BaseException | None = None
    for span, result in zip(spans, results, strict=True):
        if isinstance(result, BaseException):
            error = error or result
            entries.extend([None] * len(span))
        else:
            entries.extend(result)
    return entries, error


async def _chunk(
    upstream: Upstream, body: dict[str, Any], items: list[Item], counts: list[int]
) -> list[VectorEntry]:
    response = await upstream(PATH, {**body, "input": items})
    data = response.get("data")
    if not isinstance(data, list) or len(data) != len(items):
        raise _bad_answer("a vector per input")
    by_index: dict[int, bytes] = {}
    try:
        for row in data:
            index = row["index"]
            if not isinstance(index, int) or not 0 <= index < len(items) or index in by_index:
                raise _bad_answer("one vector per input index")
            by_index[index] = from_provider(row["embedding"])
    except (TypeError, KeyError, ValueError) as exc:
        raise _bad_answer(str(exc)) from exc
    usage = response.get("usage")
    billed = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    shares = apportion(counts, billed if isinstance(billed, int) else None)
    return [VectorEntry.fresh(by_index[i], t) for i, t in enumerate(shares)]


async def count_tokens(items: list[Item], encoding: Encoding | None) -> list[int]:
    """Each input's tokens by our tokenizer (token arrays: their length; no tokenizer: ~4
    characters a token)."""
    if encoding is None:
        return [len(i) if isinstance(i, list) else max(1, len(i) // 4) for i in items]

    def count() -> list[int]:
        return [len(i) if isinstance(i, list) else len(encoding.encode_ordinary(i)) for i in items]

    if sum(len(i) for i in items if isinstance(i, str)) > _OFFLOAD_CHARS:
        return await asyncio.to_thread(count)
    return count()


def _bad_answer(what: str) -> ProviderError:
    return ProviderError(
        f"The upstream provider answered the embeddings request badly ({what}).",
        status_code=502,
    )
