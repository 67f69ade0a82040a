"""The cached endpoints as test parameters, so one test covers each of them.

To cover a new endpoint (embeddings, prompt templates), add an `Endpoint` to `ENDPOINTS`:
the tenancy, hostile-input and fuzz tests pick it up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import respx

from tests.conftest import CHAT, Running, chat_response, completion_response


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str  # on the gateway
    upstream: str  # on the provider, relative to conftest.UPSTREAM
    body: dict[str, Any]  # a valid request
    answer: Callable[[], dict[str, Any]]  # a provider's 200 body
    with_text: Callable[[str], dict[str, Any]]  # a valid request carrying `text` as its prompt

    def mock(self, upstream: respx.MockRouter, **kwargs: Any) -> respx.Route:
        """The provider route, answering 200 unless `side_effect`/`return_value` say otherwise."""
        if not kwargs:
            kwargs = {"side_effect": lambda request: httpx.Response(200, json=self.answer())}
        return upstream.post(self.upstream).mock(**kwargs)


ENDPOINTS = [
    Endpoint(
        "chat",
        "/v1/chat/completions",
        "/chat/completions",
        CHAT,
        chat_response,
        lambda text: {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]},
    ),
    Endpoint(
        "completions",
        "/v1/completions",
        "/completions",
        {"model": "gpt-3.5-turbo-instruct", "prompt": "Say hello"},
        completion_response,
        lambda text: {"model": "gpt-3.5-turbo-instruct", "prompt": text},
    ),
]

each_endpoint = pytest.mark.parametrize("ep", ENDPOINTS, ids=[e.name for e in ENDPOINTS])


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
    """Coalescing flights (held locks) still open."""
    return len(gw.gateway.pipeline.coalescer)
