"""The offline mock provider answers like OpenAI, including embeddings in both formats."""

from __future__ import annotations

import base64

import numpy as np

from genai_api.providers.mock import MockProvider


async def test_embeddings_base64_is_the_float32_bytes_of_the_float_answer() -> None:
    mock = MockProvider()
    body = {"model": "text-embedding-3-small", "input": ["a", "b"], "dimensions": 64}
    floats = await mock.create("/embeddings", body)
    encoded = await mock.create("/embeddings", {**body, "encoding_format": "base64"})
    for f, e in zip(floats["data"], encoded["data"], strict=True):
        as_float32 = np.asarray(f["embedding"], dtype="<f4")
        assert len(as_float32) == 64
        assert as_float32.tolist() == f["embedding"]  # floats that are exactly float32 values
        assert base64.b64decode(e["embedding"]) == as_float32.tobytes()
    assert [d["index"] for d in encoded["data"]] == [0, 1]
    assert encoded["usage"]["prompt_tokens"] == floats["usage"]["prompt_tokens"] > 0


async def test_embeddings_of_a_token_array_are_one_vector() -> None:
    answer = await MockProvider().create(
        "/embeddings", {"model": "m", "input": [1, 2, 3], "dimensions": 8}
    )
    assert len(answer["data"]) == 1
    assert answer["usage"]["prompt_tokens"] == 3
