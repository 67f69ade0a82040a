"""`whole_body`: the body read as Starlette's `request.body()` reads it, without its generator."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
import respx
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message

from genai_api.http.body import whole_body
from tests.conftest import CHAT, chat_response, make_settings, running


def _request(messages: list[Message]) -> Request:
    queue = list(messages)

    async def receive() -> Message:
        return queue.pop(0)

    return Request({"type": "http", "method": "POST", "headers": []}, receive)


async def test_chunks_are_joined_and_remembered_for_request_body() -> None:
    request = _request(
        [
            {"type": "http.request", "body": b'{"a":', "more_body": True},
            {"type": "http.request", "body": b"", "more_body": True},
            {"type": "http.request", "body": b"1}", "more_body": False},
        ]
    )
    assert await whole_body(request) == b'{"a":1}'
    # Read once: Starlette's own reader (an exception handler's) gets the same bytes again.
    assert await request.body() == b'{"a":1}'
    assert await whole_body(request) == b'{"a":1}'


async def test_a_disconnect_while_reading_is_starlettes_client_disconnect() -> None:
    request = _request(
        [
            {"type": "http.request", "body": b'{"a":', "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    with pytest.raises(ClientDisconnect):
        await whole_body(request)
    assert request._is_disconnected


async def test_a_body_already_streamed_is_refused_as_starlette_refuses_it() -> None:
    request = _request([{"type": "http.request", "body": b"{}", "more_body": False}])
    async for _ in request.stream():
        pass
    with pytest.raises(RuntimeError, match="Stream consumed"):
        await whole_body(request)


async def test_a_body_sent_in_chunks_is_the_same_request_as_sent_whole(
    upstream: respx.MockRouter,
) -> None:
    provider = upstream.post("/chat/completions").mock(
        return_value=httpx.Response(200, json=chat_response())
    )
    raw = orjson.dumps(CHAT)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 7):
            yield raw[start : start + 7]

    async with running(make_settings()) as gw:
        first = await gw.http.post(
            "/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"}
        )
        second = await gw.http.post("/v1/chat/completions", json=CHAT)
    assert first.status_code == 200, first.text
    assert first.headers["x-cache"] == "MISS"
    assert second.headers["x-cache"] == "HIT"
    assert second.headers["x-cache-key"] == first.headers["x-cache-key"]
    assert provider.call_count == 1
