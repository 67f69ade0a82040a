"""The cached endpoints as test parameters, so one test covers each of them.

To cover a new endpoint (prompt templates, streams), add an `Endpoint` to `ENDPOINTS`: the
tenancy and hostile-input tests pick it up (the fuzz test picks routes by path).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import respx

from bench import fake_responses
from tests.conftest import CHAT, Running, chat_response, completion_response


def _chat_answer(n: int) -> dict[str, Any]:
    return {**chat_response(), "id": f"call-{n}"}


def _completion_answer(n: int) -> dict[str, Any]:
    return {**completion_response(), "id": f"call-{n}"}


def _response_answer(n: int) -> dict[str, Any]:
    return {**fake_responses.response({"model": "gpt-4o-mini", "input": "x"}), "id": f"call-{n}"}


def _embedding_answer(n: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [float(n), 0.25, -0.5, 1.0]}],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 2, "total_tokens": 2},
    }


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str  # on the gateway
    upstream: str  # on the provider, relative to conftest.UPSTREAM
    body: dict[str, Any]  # a valid request
    answer: Callable[[int], dict[str, Any]]  # the provider's 200 body for its n-th call
    mark: Callable[[dict[str, Any]], Any]  # which provider call a client's answer came from
    with_text: Callable[[str], dict[str, Any]]  # a valid request carrying `text` as its prompt
    int_params: tuple[str, ...]  # integer parameters of its schema
    max_tokens: str = "max_tokens"  # its parameter bounding the answer's length
    n: bool = True  # it takes `n` (several choices)

    def mock(self, upstream: respx.MockRouter, **kwargs: Any) -> respx.Route:
        """The provider route: by default a 200 answer telling each call apart (`mark`)."""
        if not kwargs:
            calls = itertools.count()
            kwargs = {
                "side_effect": lambda request: httpx.Response(200, json=self.answer(next(calls)))
            }
        return upstream.post(self.upstream).mock(**kwargs)


CHAT_ENDPOINT = Endpoint(
    "chat",
    "/v1/chat/completions",
    "/chat/completions",
    CHAT,
    _chat_answer,
    lambda answer: answer["id"],
    lambda text: {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]},
    ("seed", "n", "max_tokens"),
)
COMPLETION_ENDPOINTS = [
    CHAT_ENDPOINT,
    Endpoint(
        "completions",
        "/v1/completions",
        "/completions",
        {"model": "gpt-3.5-turbo-instruct", "prompt": "Say hello"},
        _completion_answer,
        lambda answer: answer["id"],
        lambda text: {"model": "gpt-3.5-turbo-instruct", "prompt": text},
        ("seed", "n", "max_tokens"),
    ),
    Endpoint(  # a shipped template (PROMPTS_DIR defaults to the repo's prompts/)
        "prompt",
        "/v1/prompts/summarise/completions",
        "/chat/completions",
        {"model": "gpt-4o-mini", "variables": {"text": "Say hello", "sentences": 1}},
        _chat_answer,
        lambda answer: answer["id"],
        lambda text: {"model": "gpt-4o-mini", "variables": {"text": text, "sentences": 1}},
        ("seed", "n", "max_tokens"),
    ),
    Endpoint(
        "responses",
        "/v1/responses",
        "/responses",
        {"model": "gpt-4o-mini", "input": "Say hello"},
        _response_answer,
        lambda answer: answer["id"],
        lambda text: {"model": "gpt-4o-mini", "input": text},
        ("max_output_tokens", "top_logprobs", "max_tool_calls"),
        max_tokens="max_output_tokens",
        n=False,
    ),
]
ENDPOINTS = [
    *COMPLETION_ENDPOINTS,
    Endpoint(
        "embeddings",
        "/v1/embeddings",
        "/embeddings",
        {"model": "text-embedding-3-small", "input": "Say hello"},
        _embedding_answer,
        lambda answer: answer["data"][0]["embedding"][0],
        lambda text: {"model": "text-embedding-3-small", "input": text},
        ("dimensions",),
    ),
]

each_endpoint = pytest.mark.parametrize("ep", ENDPOINTS, ids=[e.name for e in ENDPOINTS])
each_completion_endpoint = pytest.mark.parametrize(
    "ep", COMPLETION_ENDPOINTS, ids=[e.name for e in COMPLETION_ENDPOINTS]
)


def assert_envelope(answer: httpx.Response, status: int) -> dict[str, Any]:
    """The answer is `status` with OpenAI's error body; returns the inner `error` object."""
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return dict(body["error"])


def stored_keys(gw: Running) -> list[str]:
    """Keys held by the gateway's memory store."""
    return list(gw.gateway.store._cache._cache)


def flights(gw: Running) -> int:
    """Coalescing flights (held locks) still open: requests' and embedding inputs'."""
    pipeline = gw.gateway.pipeline
    return len(pipeline.coalescer) + len(pipeline.embeddings.flights)
