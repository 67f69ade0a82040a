"""Turning an embeddings `EmbeddingOutcome` into OpenAI's answer, in the format asked for.

Vectors are kept as float32 bytes, so `base64` is one `b64encode` per vector (exactly what
OpenAI sends) and `float` lets orjson print numpy float32 arrays: the shortest decimal that
reads back as the same float32, written in C, with no Python float list in between; the
text of a vector served lately is printed once (`genai_api.embeddings.float_texts`).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from genai_api.embeddings.float_texts import FLOAT_TEXTS
from genai_api.embeddings.runner import EmbeddingOutcome
from genai_api.embeddings.vectors import as_base64


def embedding_headers(outcome: EmbeddingOutcome) -> dict[str, str]:
    headers = {
        "X-Cache": outcome.status.value,
        "X-Cache-Key": outcome.key,
        "X-Cache-Hits": str(outcome.hits),
        "X-Cache-Misses": str(outcome.misses),
        "X-Cache-Coalesced": str(outcome.coalesced),
    }
    if outcome.from_cache:
        headers["Age"] = str(outcome.age)
        headers["X-Cache-Saved-Tokens"] = str(outcome.saved_tokens)
        headers["X-Cache-Saved-Cost-USD"] = format(outcome.saved_cost, "f")
    if outcome.fallback is not None:  # a fallback model answered (CONTRACT §7)
        headers["X-Upstream-Model"] = outcome.fallback
    return headers


def render_embeddings(outcome: EmbeddingOutcome, encoding_format: str) -> Response:
    encode: Any = as_base64 if encoding_format == "base64" else FLOAT_TEXTS.text
    doc = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode(vector)}
            for i, vector in enumerate(outcome.vectors)
        ],
        "model": outcome.model,
        "usage": {"prompt_tokens": outcome.tokens, "total_tokens": outcome.tokens},
    }
    return Response(
        orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY),
        media_type="application/json",
        headers=embedding_headers(outcome),
    )
