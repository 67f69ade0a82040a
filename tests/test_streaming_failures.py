"""Streams that fail, are cut, time out or lose their client: never stored, the client
told in OpenAI's error shape, and the provider call finished or cancelled as configured."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest
import redis.asyncio as aioredis
import respx

from tests.redis_server import RedisServer
from tests.streaming_client import (
    HELLO,
    STREAM,
    HeldStream,
    assembled,
    collect,
    landed,
    make_settings,
    raw_text,
    sse,
    sse_route,
    streaming,
)


async def test_cut_stream_is_not_stored_and_ends_with_an_error_event(
    upstream: respx.MockRouter,
) -> None:
    cut = upstream.post("/chat/completions").mock(
        side_effect=lambda request: httpx.Response(
            200, content=sse(*HELLO[:2], done=False), headers={"content-type": "text/event-stream"}
        )
    )
    async with streaming(make_settings()) as gw:
        headers, text = await raw_text(gw, STREAM)
        with pytest.raises(openai.APIError, match="ended"):
            await collect(gw)
        assert cut.call_count == 2  # nothing was stored: the next request called again
        cut.side_effect = lambda request: httpx.Response(200, content=sse(*HELLO))
        _, chunks = await collect(gw)
        _, again = await collect(gw)
    assert headers["x-cache"] == "MISS"
    events = [e for e in text.decode().split("\n\n") if e]
    assert json.loads(events[0][6:])["choices"][0]["delta"]["role"] == "assistant"
    error = json.loads(events[-1][6:])["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert not text.endswith(b"data: [DONE]\n\n")
    assert cut.call_count == 3
    assert len(chunks) == len(again) == len(HELLO) - 1


async def test_error_event_mid_stream_is_relayed_and_not_stored(
    upstream: respx.MockRouter,
) -> None:
    failure = {"error": {"message": "overloaded", "type": "server_error", "code": None}}
    route = upstream.post("/chat/completions").mock(
        side_effect=lambda request: httpx.Response(200, content=sse(HELLO[0], failure))
    )
    async with streaming(make_settings()) as gw:
        with pytest.raises(openai.APIError, match="overloaded"):
            await collect(gw)
        with pytest.raises(openai.APIError, match="overloaded"):
            await collect(gw)
    assert route.call_count == 2


async def test_error_before_first_chunk_is_a_plain_http_error(upstream: respx.MockRouter) -> None:
    body = {"error": {"message": "slow down", "type": "requests", "code": "rate_limit"}}
    upstream.post("/chat/completions").mock(
        return_value=httpx.Response(429, json=body, headers={"retry-after": "7"})
    )
    async with streaming(make_settings()) as gw:
        with pytest.raises(openai.RateLimitError) as caught:
            await collect(gw)
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.response.headers["content-type"] == "application/json"


async def test_timeout_mid_stream_is_not_stored(upstream: respx.MockRouter) -> None:
    held = HeldStream()
    route = upstream.post("/chat/completions").mock(side_effect=held)
    async with streaming(make_settings(upstream_timeout=0.3)) as gw:
        held.send(HELLO[0])
        with pytest.raises(openai.APIError, match="in time"):
            await collect(gw)
        assert held.closed.is_set()
        route.side_effect = lambda request: httpx.Response(200, content=sse(*HELLO))
        headers, _ = await collect(gw)
    assert headers["x-cache"] == "MISS"


async def test_client_disconnect_still_stores_the_completed_stream(
    upstream: respx.MockRouter,
) -> None:
    held = HeldStream()
    route = upstream.post("/chat/completions").mock(side_effect=held)
    async with streaming(make_settings()) as gw:
        held.send(HELLO[0])
        async with gw.http.stream("POST", "/v1/chat/completions", json=STREAM) as response:
            async for _ in response.aiter_bytes():
                break  # the client hangs up after the first chunk
        assert response.extensions["app_task"].done()  # its request ended
        assert not held.closed.is_set()  # while the provider call goes on
        held.send(*HELLO[1:])
        held.end()
        await landed(gw)
        headers, chunks = await collect(gw)
    assert route.call_count == 1
    assert headers["x-cache"] == "HIT"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello!"


async def test_disconnect_cancels_the_call_when_configured_and_alone(
    upstream: respx.MockRouter,
) -> None:
    held = HeldStream()
    route = upstream.post("/chat/completions").mock(side_effect=held)
    async with streaming(make_settings(stream_finish_on_disconnect=False)) as gw:
        held.send(HELLO[0])
        async with gw.http.stream("POST", "/v1/chat/completions", json=STREAM) as response:
            async for _ in response.aiter_bytes():
                break
        await asyncio.wait_for(held.closed.wait(), 5)  # the gateway stopped reading upstream
        await landed(gw)
        route.side_effect = lambda request: httpx.Response(200, content=sse(*HELLO))
        headers, _ = await collect(gw)
    assert headers["x-cache"] == "MISS"
    assert route.call_count == 2


async def test_disconnect_does_not_cancel_a_call_others_still_follow(
    upstream: respx.MockRouter,
) -> None:
    held = HeldStream()
    route = upstream.post("/chat/completions").mock(side_effect=held)
    async with streaming(make_settings(stream_finish_on_disconnect=False)) as gw:
        held.send(HELLO[0])
        stays = await gw.client.chat.completions.create(**STREAM)
        async with gw.http.stream("POST", "/v1/chat/completions", json=STREAM) as response:
            async for _ in response.aiter_bytes():
                break
        assert response.extensions["app_task"].done()
        assert response.headers["x-cache"] == "COALESCED"
        held.send(*HELLO[1:])
        held.end()
        chunks = [c async for c in stays]
        await landed(gw)
        hit, _ = await collect(gw)
    assert route.call_count == 1
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello!"
    assert hit["x-cache"] == "HIT"


@pytest.mark.redis
async def test_cut_stream_leaves_nothing_on_redis(
    upstream: respx.MockRouter, redis_url: str
) -> None:
    upstream.post("/chat/completions").mock(
        side_effect=lambda request: httpx.Response(200, content=sse(*HELLO[:3], done=False))
    )
    settings = make_settings(cache_backend="redis", redis_url=redis_url)
    async with streaming(settings) as gw:
        with pytest.raises(openai.APIError):
            await collect(gw)
    client = aioredis.from_url(redis_url)
    try:
        assert [
            k
            async for k in client.scan_iter(match=f"{settings.cache_namespace}:*")
            if b":stats:" not in k
        ] == []
    finally:
        await client.aclose()


@pytest.mark.redis
async def test_stream_with_redis_down_is_relayed_as_bypass(
    upstream: respx.MockRouter, redis_server: RedisServer
) -> None:
    route = sse_route(upstream, HELLO)
    settings = make_settings(cache_backend="redis", redis_url=redis_server.url)
    async with streaming(settings) as gw:
        redis_server.stop()
        headers, chunks = await collect(gw)
    assert headers["x-cache"] == "BYPASS"
    assert assembled(chunks)["message"]["content"] == "Hello!"
    assert route.call_count == 1
