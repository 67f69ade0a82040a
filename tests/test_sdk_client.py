"""`GatewayOpenAI`: the SDK's client with its per-path work remembered sends exactly what the
SDK's own client sends, call after call, and follows every change the SDK allows."""

from __future__ import annotations

import httpx
import openai
import pytest
import respx

from genai_api.providers.sdk_client import GatewayOpenAI
from tests.conftest import UPSTREAM, chat_response

BODY = b'{"model": "gpt-4o-mini", "messages": []}'


def clients() -> tuple[openai.AsyncOpenAI, GatewayOpenAI]:
    options = {"api_key": "sk-one", "base_url": UPSTREAM, "max_retries": 2}
    return (
        openai.AsyncOpenAI(http_client=httpx.AsyncClient(), **options),  # type: ignore[arg-type]
        GatewayOpenAI(http_client=httpx.AsyncClient(), **options),
    )


def sent_headers(route: respx.Route) -> list[dict[str, str]]:
    return [dict(call.request.headers) for call in route.calls]


async def test_sends_what_the_sdk_sends_call_after_call(upstream: respx.MockRouter) -> None:
    route = upstream.post("/chat/completions").respond(json=chat_response())
    sdk, gateway = clients()
    await sdk.post("/chat/completions", cast_to=httpx.Response, content=BODY)
    for _ in range(3):
        response = await gateway.post_raw("/chat/completions", BODY)
        assert response.json()["object"] == "chat.completion"
    first, *ours = sent_headers(route)
    assert ours == [first] * 3
    assert first["user-agent"].startswith("AsyncOpenAI/Python")
    assert [c.request.content for c in route.calls] == [BODY] * 4
    assert {str(c.request.url) for c in route.calls} == {UPSTREAM + "/chat/completions"}


async def test_each_retry_says_which_it_is(upstream: respx.MockRouter) -> None:
    busy = httpx.Response(429, json={"error": {"message": "busy"}}, headers={"retry-after-ms": "1"})
    route = upstream.post("/chat/completions").mock(
        side_effect=[busy, busy, httpx.Response(200, json=chat_response())]
    )
    _, gateway = clients()
    await gateway.post_raw("/chat/completions", BODY)
    again = upstream.post("/completions").mock(side_effect=[busy, busy, busy])
    with pytest.raises(openai.RateLimitError):
        await gateway.post_raw("/completions", BODY)
    counts = [h["x-stainless-retry-count"] for h in sent_headers(route) + sent_headers(again)]
    assert counts == ["0", "1", "2", "0", "1", "2"]


async def test_follows_a_new_api_key_and_base_url(upstream: respx.MockRouter) -> None:
    route = upstream.post("/chat/completions").respond(json=chat_response())
    moved = upstream.post("/moved/chat/completions").respond(json=chat_response())
    _, gateway = clients()
    await gateway.post_raw("/chat/completions", BODY)
    gateway.api_key = "sk-two"
    await gateway.post_raw("/chat/completions", BODY)
    gateway.base_url = httpx.URL(UPSTREAM + "/moved/")
    await gateway.post_raw("/chat/completions", BODY)
    auth = [h["authorization"] for h in sent_headers(route)]
    assert auth == ["Bearer sk-one", "Bearer sk-two"]
    assert moved.call_count == 1


async def test_a_call_with_its_own_timeout_is_built_as_the_sdk_builds_it(
    upstream: respx.MockRouter,
) -> None:
    route = upstream.post("/chat/completions").respond(json=chat_response())
    _, gateway = clients()
    await gateway.post("/chat/completions", cast_to=httpx.Response, options={"timeout": 7.0})
    await gateway.post_raw("/chat/completions", BODY)
    timeouts = [h["x-stainless-read-timeout"] for h in sent_headers(route)]
    assert timeouts == ["7.0", "600"]


async def test_a_streamed_call_leaves_the_body_unread(upstream: respx.MockRouter) -> None:
    upstream.post("/chat/completions").respond(
        content=b"data: [DONE]\n\n", headers={"content-type": "text/event-stream"}
    )
    _, gateway = clients()
    response = await gateway.post_raw("/chat/completions", BODY, stream=True)
    assert not response.is_stream_consumed
    assert [chunk async for chunk in response.aiter_bytes()] == [b"data: [DONE]\n\n"]
    await response.aclose()


async def test_makes_no_idempotency_key_the_openai_client_would_not_send(
    upstream: respx.MockRouter,
) -> None:
    route = upstream.post("/chat/completions").respond(json=chat_response())
    _, gateway = clients()
    await gateway.post_raw("/chat/completions", BODY)
    assert gateway._idempotency_header is None
    assert not any("idempotency" in name for name in route.calls[0].request.headers)
    gateway._idempotency_header = "Idempotency-Key"  # a client that sends one gets a fresh one
    assert gateway._idempotency_key() != gateway._idempotency_key()
