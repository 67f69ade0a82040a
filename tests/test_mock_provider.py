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


async def test_the_responses_api_answers_through_the_sdk_whole_and_streamed() -> None:
    """`make run` without a key: the Responses API answers offline, with tiktoken usage."""
    from genai_api.savings.tokenizer import TokenCounter
    from tests.conftest import make_settings, running

    body = {"model": "gpt-4o-mini", "instructions": "Be brief.", "input": "Say hello"}
    async with running(make_settings(provider="mock")) as gw:
        whole = await gw.client.responses.with_raw_response.create(**body)
        async with gw.client.responses.stream(**{**body, "input": "Say more"}) as stream:
            deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
            streamed = await stream.get_final_response()
        hit = await gw.client.responses.with_raw_response.create(**{**body, "input": "Say more"})
    answer = whole.parse()
    assert whole.headers["x-cache"] == "MISS" and hit.headers["x-cache"] == "HIT"
    assert answer.id.startswith("resp_") and answer.output[0].id.startswith("msg_")
    assert answer.status == "completed"
    assert answer.output_text == "This is a mock answer to: Say hello"
    tokens = TokenCounter.load()
    assert answer.usage is not None
    assert answer.usage.output_tokens == tokens.count_text(answer.output_text, "gpt-4o-mini")
    assert answer.usage.input_tokens > answer.usage.output_tokens // 2
    assert answer.usage.total_tokens == answer.usage.input_tokens + answer.usage.output_tokens
    assert len(deltas) > 3 and "".join(deltas) == streamed.output_text  # word by word
    assert hit.parse().output_text == streamed.output_text
