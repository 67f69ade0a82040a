"""Usage fallback: answers without `usage` are counted with tiktoken, offline and exactly."""

from __future__ import annotations

import socket
import threading
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx

from genai_api.apis import CHAT as CHAT_API
from genai_api.apis import COMPLETIONS
from genai_api.apis import embeddings as embeddings_api
from genai_api.entry import Entry
from genai_api.models.table import ModelInfo
from genai_api.providers.mock import MockProvider
from genai_api.savings.tokenizer import THREAD_OFFLOAD_THRESHOLD, TokenCounter
from genai_api.savings.usage import estimate_usage
from tests.conftest import (
    CHAT,
    chat_response,
    completion_response,
    make_settings,
    running,
    stats_doc,
)
from tests.streaming_client import HELLO, collect, landed, sse_route, streaming


def _blocked(*_args: Any, **_kwargs: Any) -> Any:
    raise OSError("network access is disabled in usage tests")


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _blocked)
    monkeypatch.setattr(socket, "create_connection", _blocked)
    monkeypatch.setattr(socket, "getaddrinfo", _blocked)


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter.load()


def no_usage(payload: dict[str, Any]) -> httpx.Response:
    payload.pop("usage")
    return httpx.Response(200, json=payload)


async def test_chat_answer_without_usage_is_counted_with_tiktoken(
    upstream: respx.MockRouter,
) -> None:
    upstream.post("/chat/completions").mock(return_value=no_usage(chat_response("Hello there!")))
    async with running(make_settings()) as gw:
        miss = await gw.http.post("/v1/chat/completions", json=CHAT)
        hit = await gw.http.post("/v1/chat/completions", json=CHAT)
        stats = stats_doc(await gw.http.get("/v1/cache/stats"))
    # o200k_base: 3 priming + 3 per message + "user" (1) + "Say hello" (2) = 9 prompt tokens;
    # "Hello there!" = 3 completion tokens.
    assert stats["tokens_saved"] == {"prompt": 9, "completion": 3, "total": 12}
    assert hit.headers["x-cache-saved-tokens"] == "12"
    # (9 * 0.15 + 3 * 0.60) / 1e6
    assert Decimal(hit.headers["x-cache-saved-cost-usd"]) == stats["cost_saved_usd"]
    assert stats["cost_saved_usd"] == stats["cost_spent_usd"] == Decimal("0.00000315")
    assert "usage" not in miss.json() and miss.content == hit.content  # relayed as sent


async def test_completion_prompt_of_token_ids_counts_one_token_per_id(
    upstream: respx.MockRouter,
) -> None:
    upstream.post("/completions").mock(return_value=no_usage(completion_response(" world")))
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": [15339, 1917, 0, 1]}
    async with running(make_settings()) as gw:
        await gw.http.post("/v1/completions", json=body)
        hit = await gw.http.post("/v1/completions", json=body)
    assert hit.headers["x-cache-saved-tokens"] == "5"  # 4 ids + " world"


def test_tool_calls_count_as_completion_tokens(counter: TokenCounter) -> None:
    response = chat_response()
    response["choices"][0]["message"] = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    }
    usage = CHAT_API.count(counter, "gpt-4o", None, CHAT, response)
    assert usage == {
        "prompt_tokens": 9,
        "completion_tokens": 2 + 6,
        "total_tokens": 17,
        "estimated": True,
    }


def test_every_choice_of_n_is_counted(counter: TokenCounter) -> None:
    usage = CHAT_API.count(counter, "gpt-4o", None, CHAT, chat_response("Hello there!", n=3))
    assert usage["completion_tokens"] == 9


async def test_unshipped_tokenizer_falls_back_by_model_name(counter: TokenCounter) -> None:
    model = ModelInfo("llama-3-70b", tokenizer="llama3")
    usage = await estimate_usage(COMPLETIONS, counter, model, {"prompt": "hello world"}, {})
    assert usage["prompt_tokens"] == 2  # cl100k_base, the documented fallback


def test_embedding_input_counts_prompt_tokens_only(counter: TokenCounter) -> None:
    body = {"input": ["hello world", "hello"]}
    usage = embeddings_api.count(counter, "text-embedding-3-small", None, body)
    assert usage == {"prompt_tokens": 3, "total_tokens": 3, "estimated": True}


def test_provider_usage_is_kept_as_sent() -> None:
    response = chat_response(prompt=1000, completion=1)
    usage = CHAT_API.usage(response)
    assert usage == response["usage"]
    assert Entry.fresh(response, model="gpt-4o-mini", usage=usage).tokens() == (1000, 1)


def test_a_usage_without_prompt_tokens_is_none() -> None:
    assert CHAT_API.usage({**chat_response(), "usage": {"total_tokens": 5}}) is None
    assert CHAT_API.usage({**chat_response(), "usage": None}) is None


class ThreadSpy(TokenCounter):
    __slots__ = ("threads",)

    def __init__(self, base: TokenCounter) -> None:
        super().__init__({name: base.get_encoding(name) for name in base.encodings})
        self.threads: set[int] = set()

    def count_text(self, text: str, model: str, encoding: str | None = None) -> int:
        self.threads.add(threading.get_ident())
        return super().count_text(text, model, encoding)


@pytest.mark.parametrize("size", [10, THREAD_OFFLOAD_THRESHOLD + 10])
async def test_only_large_inputs_are_counted_off_the_event_loop(
    counter: TokenCounter, size: int
) -> None:
    spy = ThreadSpy(counter)
    body = {"prompt": "a" * size}
    model = ModelInfo("gpt-3.5-turbo-instruct")
    usage = await estimate_usage(COMPLETIONS, spy, model, body, completion_response())
    offloaded = spy.threads != {threading.get_ident()}
    assert offloaded == (size > THREAD_OFFLOAD_THRESHOLD)
    assert usage["prompt_tokens"] == counter.count_text("a" * size, "gpt-3.5-turbo")


async def test_mock_provider_reports_tiktoken_usage(counter: TokenCounter) -> None:
    answer = await MockProvider(tokens=counter).create("/chat/completions", CHAT)
    text = answer["choices"][0]["message"]["content"]
    assert answer["usage"] == {
        "prompt_tokens": 9,
        "completion_tokens": counter.count_text(text, "gpt-4o-mini"),
        "total_tokens": 9 + counter.count_text(text, "gpt-4o-mini"),
    }


def test_cost_of_counted_usage_is_exact(counter: TokenCounter) -> None:
    usage = CHAT_API.count(counter, "gpt-4o-mini", None, CHAT, chat_response())
    model = ModelInfo("gpt-4o-mini", None, Decimal("0.15"), Decimal("0.60"))
    assert model.cost(usage["prompt_tokens"], usage["completion_tokens"]) == Decimal("0.00000315")


async def test_streamed_answer_without_usage_is_counted_with_tiktoken(
    upstream: respx.MockRouter,
) -> None:
    sse_route(upstream, HELLO[:4])  # "Hello!" and a finish, but no usage chunk
    async with streaming(make_settings()) as gw:
        await collect(gw)
        await landed(gw)
        hit = await gw.http.post("/v1/chat/completions", json=CHAT)
        stats = stats_doc(await gw.http.get("/v1/cache/stats"))
    assert hit.headers["x-cache"] == "HIT"
    assert hit.headers["x-cache-saved-tokens"] == "11"  # 9 prompt + "Hello!" (2)
    assert stats["tokens_saved"] == {"prompt": 9, "completion": 2, "total": 11}
