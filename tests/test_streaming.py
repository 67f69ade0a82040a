"""Streaming through the gateway with the official openai client: relayed live, stored once,
replayed faithfully, fanned out to concurrent waiters, never stored when it fails."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai
import pytest
import redis.asyncio as aioredis
import respx
import uvicorn
from openai.lib.streaming.chat import ChatCompletionStreamState

from genai_api.entry import Entry
from tests.conftest import CHAT, Running, chat_response
from tests.conftest import make_settings as _make_settings
from tests.redis_server import RedisServer, free_port
from tests.streaming_client import HeldStream, sse, streaming

STREAM = {**CHAT, "stream": True}


def make_settings(**overrides: Any) -> Any:
    """Test settings with a short upstream timeout, so a stuck stream fails the test fast."""
    return _make_settings(**{"upstream_timeout": 10, **overrides})


def chunk(
    delta: dict[str, Any] | None = None,
    *,
    finish: str | None = None,
    index: int = 0,
    logprobs: Any = None,
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-s1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "system_fingerprint": "fp_s",
        "choices": [
            {"index": index, "delta": delta or {}, "logprobs": logprobs, "finish_reason": finish}
        ],
        "usage": None,
    }


def usage_chunk(prompt: int = 12, completion: int = 5) -> dict[str, Any]:
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    return {**chunk(), "choices": [], "usage": usage}


HELLO = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Hel"}),
    chunk({"content": "lo!"}),
    chunk(finish="stop"),
    usage_chunk(),
]

TOOLS = [
    chunk(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ],
        }
    ),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Paris"}'}}]}),
    chunk(
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": "{}"},
                }
            ]
        }
    ),
    chunk(finish="tool_calls"),
    usage_chunk(),
]

TOKEN = {"token": "4", "logprob": -0.1, "bytes": [52], "top_logprobs": []}
REASONING = [
    chunk({"role": "assistant", "reasoning_content": "Let me "}),
    chunk({"reasoning_content": "think."}),
    chunk({"content": "4"}, logprobs={"content": [TOKEN], "refusal": None}),
    chunk({"content": "2"}, logprobs={"content": [{**TOKEN, "token": "2"}], "refusal": None}),
    chunk(finish="stop"),
    usage_chunk(),
]


def _sse_route(upstream: respx.MockRouter, chunks: list[dict[str, Any]]) -> respx.Route:
    return upstream.post("/chat/completions").mock(
        side_effect=lambda request: httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=sse(*chunks)
        )
    )


async def _collect(gw: Running, **extra: Any) -> tuple[httpx.Headers, list[Any]]:
    raw = await gw.client.chat.completions.with_raw_response.create(**STREAM, **extra)
    return raw.headers, [c async for c in raw.parse()]


def _message(chunks: list[Any]) -> dict[str, Any]:
    """The completion the openai SDK's own accumulator builds from the chunks."""
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for c in chunks:
        state.handle_chunk(c)
    final = state.get_final_completion().choices[0]
    message = final.message.model_dump(exclude_none=True, exclude={"parsed"})
    for call in message.get("tool_calls", ()):
        call.pop("index", None)
        call["function"].pop("parsed_arguments", None)
    return {"message": message, "finish_reason": final.finish_reason}


async def _raw_text(gw: Running, body: dict[str, Any]) -> tuple[httpx.Headers, bytes]:
    async with gw.http.stream("POST", "/v1/chat/completions", json=body) as response:
        return response.headers, await response.aread()


async def _landed(gw: Running) -> None:
    """Wait until no flight is running (a disconnected client's call finishing)."""
    for _ in range(500):
        if not len(gw.gateway.pipeline.coalescer):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the flight never landed")


async def test_miss_relays_first_chunk_while_upstream_is_still_open(
    upstream: respx.MockRouter,
) -> None:
    held = HeldStream()
    route = upstream.post("/chat/completions").mock(side_effect=held)
    async with streaming(make_settings()) as gw:
        held.send(HELLO[0], HELLO[1])
        raw = await gw.client.chat.completions.with_raw_response.create(**STREAM)
        stream = raw.parse().__aiter__()
        first = await asyncio.wait_for(stream.__anext__(), 5)
        second = await asyncio.wait_for(stream.__anext__(), 5)
        assert not held.closed.is_set()  # the provider has not finished: this was live
        held.send(*HELLO[2:])
        held.end()
        rest = [c async for c in stream]
    assert raw.headers["x-cache"] == "MISS"
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert len(raw.headers["x-cache-key"]) == 64
    assert (first.choices[0].delta.role, second.choices[0].delta.content) == ("assistant", "Hel")
    assert [c.choices[0].delta.content for c in rest[:1]] == ["lo!"]
    assert rest[-1].choices[0].finish_reason == "stop"
    sent = json.loads(route.calls.last.request.content)
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


async def test_hit_replays_identical_chunk_texts(upstream: respx.MockRouter) -> None:
    route = _sse_route(upstream, HELLO)
    async with streaming(make_settings()) as gw:
        miss_headers, miss = await _raw_text(gw, STREAM)
        hit_headers, hit = await _raw_text(gw, STREAM)
    assert route.call_count == 1
    assert (miss_headers["x-cache"], hit_headers["x-cache"]) == ("MISS", "HIT")
    assert hit == miss
    assert hit.endswith(b"data: [DONE]\n\n")
    assert hit.count(b"data: ") == len(HELLO)  # 4 chunks (usage withheld) + [DONE]
    assert int(hit_headers["age"]) >= 0
    assert hit_headers["x-cache-saved-tokens"] == "17"
    assert hit_headers["x-cache-key"] == miss_headers["x-cache-key"]


@pytest.mark.parametrize("chunks", [HELLO, TOOLS, REASONING], ids=["text", "tools", "reasoning"])
async def test_stream_miss_then_non_stream_hit_give_the_same_completion(
    upstream: respx.MockRouter, chunks: list[dict[str, Any]]
) -> None:
    route = _sse_route(upstream, chunks)
    async with streaming(make_settings()) as gw:
        _, streamed = await _collect(gw)
        raw = await gw.client.chat.completions.with_raw_response.create(**CHAT)
    assert route.call_count == 1
    assert raw.headers["x-cache"] == "HIT"
    whole = raw.parse()
    choice = whole.choices[0]
    expected = _message(streamed)
    assert choice.message.model_dump(exclude_none=True) == expected["message"]
    assert choice.finish_reason == expected["finish_reason"]
    assert whole.usage is not None and whole.usage.total_tokens == 17
    if chunks is TOOLS:
        calls = choice.message.tool_calls or []
        assert [c.function.arguments for c in calls] == ['{"city": "Paris"}', "{}"]  # type: ignore[union-attr]
    if chunks is REASONING:
        assert choice.message.model_extra == {"reasoning_content": "Let me think."}
        assert choice.logprobs is not None and choice.logprobs.content is not None
        assert [t.token for t in choice.logprobs.content] == ["4", "2"]


async def test_non_stream_miss_then_stream_hit_is_a_well_formed_stream(
    upstream: respx.MockRouter,
) -> None:
    response = chat_response()
    response["choices"][0] = {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": None,
            "refusal": "I can't help with that.",
            "reasoning_content": "Policy says no.",
            "tool_calls": [
                {
                    "id": "call_9",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"q": 1}'},
                }
            ],
        },
        "logprobs": {"content": None, "refusal": [TOKEN]},
        "finish_reason": "tool_calls",
    }
    route = upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=response))
    async with streaming(make_settings()) as gw:
        whole = await gw.client.chat.completions.create(**CHAT)
        headers, chunks = await _collect(gw, stream_options={"include_usage": True})
        _, text = await _raw_text(gw, STREAM)
    assert route.call_count == 1
    assert headers["x-cache"] == "HIT"
    assert text.endswith(b"data: [DONE]\n\n")
    streamed = _message(chunks)
    assert streamed["message"] == whole.choices[0].message.model_dump(exclude_none=True)
    assert streamed["finish_reason"] == "tool_calls"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 17
    assert any(c.choices and c.choices[0].logprobs for c in chunks)


async def test_include_usage_is_honoured_on_miss_and_hit(upstream: respx.MockRouter) -> None:
    _sse_route(upstream, HELLO)
    async with streaming(make_settings()) as gw:
        _, plain_miss = await _collect(gw)
        _, usage_hit = await _collect(gw, stream_options={"include_usage": True})
        _, plain_hit = await _collect(gw)
    assert all(c.usage is None for c in plain_miss + plain_hit)
    assert len(plain_hit) == len(HELLO) - 1
    assert usage_hit[-1].choices == [] and usage_hit[-1].usage is not None
    assert usage_hit[-1].usage.prompt_tokens == 12


async def test_concurrent_streamed_misses_share_one_live_call(upstream: respx.MockRouter) -> None:
    held = HeldStream()
    route = upstream.post("/chat/completions").mock(side_effect=held)
    async with streaming(make_settings()) as gw:
        raws = await asyncio.gather(
            *(gw.client.chat.completions.with_raw_response.create(**STREAM) for _ in range(3)),
            _send_after_start(held, HELLO[0]),
        )
        streams = [r.parse().__aiter__() for r in raws[:3]]
        firsts = [await asyncio.wait_for(s.__anext__(), 5) for s in streams]
        assert not held.closed.is_set()  # every waiter got the first chunk before the end
        held.send(*HELLO[1:])
        held.end()
        rests = [[c async for c in s] for s in streams]
    assert route.call_count == 1
    assert sorted(r.headers["x-cache"] for r in raws[:3]) == ["COALESCED", "COALESCED", "MISS"]
    for first, rest in zip(firsts, rests, strict=True):
        assert first.choices[0].delta.role == "assistant"
        assert "".join(c.choices[0].delta.content or "" for c in rest) == "Hello!"
    stats = gw.gateway.accounting.snapshot()
    assert (stats["misses"], stats["coalesced"]) == (1, 2)


async def _send_after_start(held: HeldStream, *chunks: dict[str, Any]) -> None:
    await held.called.wait()
    held.send(*chunks)


async def test_cut_stream_is_not_stored_and_ends_with_an_error_event(
    upstream: respx.MockRouter,
) -> None:
    cut = upstream.post("/chat/completions").mock(
        side_effect=lambda request: httpx.Response(
            200, content=sse(*HELLO[:2], done=False), headers={"content-type": "text/event-stream"}
        )
    )
    async with streaming(make_settings()) as gw:
        headers, text = await _raw_text(gw, STREAM)
        with pytest.raises(openai.APIError, match="ended"):
            await _collect(gw)
        assert cut.call_count == 2  # nothing was stored: the next request called again
        cut.side_effect = lambda request: httpx.Response(200, content=sse(*HELLO))
        _, chunks = await _collect(gw)
        _, again = await _collect(gw)
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
            await _collect(gw)
        with pytest.raises(openai.APIError, match="overloaded"):
            await _collect(gw)
    assert route.call_count == 2


async def test_error_before_first_chunk_is_a_plain_http_error(upstream: respx.MockRouter) -> None:
    body = {"error": {"message": "slow down", "type": "requests", "code": "rate_limit"}}
    upstream.post("/chat/completions").mock(
        return_value=httpx.Response(429, json=body, headers={"retry-after": "7"})
    )
    async with streaming(make_settings()) as gw:
        with pytest.raises(openai.RateLimitError) as caught:
            await _collect(gw)
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.response.headers["content-type"] == "application/json"


async def test_timeout_mid_stream_is_not_stored(upstream: respx.MockRouter) -> None:
    held = HeldStream()
    route = upstream.post("/chat/completions").mock(side_effect=held)
    async with streaming(make_settings(upstream_timeout=0.3)) as gw:
        held.send(HELLO[0])
        with pytest.raises(openai.APIError, match="in time"):
            await _collect(gw)
        assert held.closed.is_set()
        route.side_effect = lambda request: httpx.Response(200, content=sse(*HELLO))
        headers, _ = await _collect(gw)
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
        await _landed(gw)
        headers, chunks = await _collect(gw)
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
        await _landed(gw)
        route.side_effect = lambda request: httpx.Response(200, content=sse(*HELLO))
        headers, _ = await _collect(gw)
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
        await _landed(gw)
        hit, _ = await _collect(gw)
    assert route.call_count == 1
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello!"
    assert hit["x-cache"] == "HIT"


async def test_non_stream_request_joins_a_streamed_flight(upstream: respx.MockRouter) -> None:
    held = HeldStream()
    route = upstream.post("/chat/completions").mock(side_effect=held)
    async with streaming(make_settings()) as gw:
        held.send(HELLO[0])
        raw = await gw.client.chat.completions.with_raw_response.create(**STREAM)
        whole = asyncio.create_task(gw.client.chat.completions.with_raw_response.create(**CHAT))
        await asyncio.sleep(0.2)  # lets it reach the pipeline and join the flight
        assert not whole.done()
        held.send(*HELLO[1:])
        held.end()
        chunks = [c async for c in raw.parse()]
        joined = await whole
    assert route.call_count == 1
    assert joined.headers["x-cache"] == "COALESCED"
    assert joined.parse().choices[0].message.content == "Hello!"
    assert len(chunks) == len(HELLO) - 1


async def test_stream_request_joins_a_non_streamed_flight(upstream: respx.MockRouter) -> None:
    called, release = asyncio.Event(), asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        called.set()
        await release.wait()
        return httpx.Response(200, json=chat_response())

    route = upstream.post("/chat/completions").mock(side_effect=slow)
    async with streaming(make_settings()) as gw:
        whole = asyncio.create_task(gw.client.chat.completions.create(**CHAT))
        await asyncio.wait_for(called.wait(), 5)  # the non-streamed flight is in the air
        streamed = asyncio.create_task(_collect(gw))
        await asyncio.sleep(0.2)  # lets it reach the pipeline and join the flight
        release.set()
        await whole
        headers, chunks = await streamed
    assert route.call_count == 1
    assert headers["x-cache"] == "COALESCED"
    assert _message(chunks)["message"]["content"] == "Hello there!"


async def test_no_store_stream_is_relayed_and_not_stored(upstream: respx.MockRouter) -> None:
    route = _sse_route(upstream, HELLO)
    async with streaming(make_settings()) as gw:
        headers, _ = await _collect(gw, extra_headers={"Cache-Control": "no-store"})
        again, chunks = await _collect(gw)
    assert headers["x-cache"] == "BYPASS"
    assert again["x-cache"] == "MISS"
    assert route.call_count == 2
    assert _message(chunks)["message"]["content"] == "Hello!"


async def test_n_choices_stream_into_one_entry(upstream: respx.MockRouter) -> None:
    chunks = [
        chunk({"role": "assistant", "content": "A"}, index=0),
        chunk({"role": "assistant", "content": "B"}, index=1),
        chunk({"content": "a"}, index=0),
        chunk(finish="stop", index=1),
        chunk(finish="length", index=0),
        usage_chunk(),
    ]
    _sse_route(upstream, chunks)
    async with streaming(make_settings()) as gw:
        await _collect(gw, n=2)
        whole = await gw.client.chat.completions.create(**CHAT, n=2)
    assert [(c.index, c.message.content, c.finish_reason) for c in whole.choices] == [
        (0, "Aa", "length"),
        (1, "B", "stop"),
    ]


async def test_legacy_completion_streams_and_hits_both_ways(upstream: respx.MockRouter) -> None:
    base = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m"}
    usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    pieces = [
        {**base, "choices": [{"index": 0, "text": t, "logprobs": None, "finish_reason": f}]}
        for t, f in ((" wor", None), ("ld", "stop"))
    ] + [{**base, "choices": [], "usage": usage}]
    route = upstream.post("/completions").mock(
        side_effect=lambda request: httpx.Response(200, content=sse(*pieces))
    )
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": "hello"}
    async with streaming(make_settings()) as gw:
        miss = [c async for c in await gw.client.completions.create(**body, stream=True)]
        hit = [c async for c in await gw.client.completions.create(**body, stream=True)]
        whole = await gw.client.completions.with_raw_response.create(**body)
    assert route.call_count == 1
    assert [c.choices[0].text for c in hit] == [c.choices[0].text for c in miss] == [" wor", "ld"]
    assert whole.headers["x-cache"] == "HIT"
    assert whole.parse().choices[0].text == " world"
    assert whole.parse().usage is not None and whole.parse().usage.total_tokens == 3  # type: ignore[union-attr]


@pytest.mark.redis
async def test_stored_entry_on_redis_keeps_chunks_and_the_assembled_completion(
    upstream: respx.MockRouter, redis_url: str
) -> None:
    route = _sse_route(upstream, TOOLS)
    settings = make_settings(cache_backend="redis", redis_url=redis_url)
    async with streaming(settings) as gw:
        _, miss = await _raw_text(gw, STREAM)
        _, hit = await _raw_text(gw, STREAM)
        whole = await gw.client.chat.completions.with_raw_response.create(**CHAT)
    assert route.call_count == 1
    assert hit == miss
    assert whole.headers["x-cache"] == "HIT"
    client = aioredis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{settings.cache_namespace}:*")]
        assert len(keys) == 1
        entry = Entry.decode(await client.get(keys[0]))
    finally:
        await client.aclose()
    assert entry is not None
    assert entry.chunks == TOOLS
    assert entry.usage == TOOLS[-1]["usage"]
    assert entry.response["object"] == "chat.completion"
    calls = entry.response["choices"][0]["message"]["tool_calls"]
    assert calls[0] == {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    answered = whole.parse().choices[0].message.tool_calls or []
    assert [c.function.arguments for c in answered] == ['{"city": "Paris"}', "{}"]  # type: ignore[union-attr]


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
            await _collect(gw)
    client = aioredis.from_url(redis_url)
    try:
        assert [k async for k in client.scan_iter(match=f"{settings.cache_namespace}:*")] == []
    finally:
        await client.aclose()


async def test_mock_provider_streams_and_caches() -> None:
    async with streaming(make_settings(provider="mock")) as gw:
        miss_headers, miss = await _collect(gw)
        hit_headers, hit = await _collect(gw)
        whole = await gw.client.chat.completions.create(**CHAT)
    assert (miss_headers["x-cache"], hit_headers["x-cache"]) == ("MISS", "HIT")
    text = "".join(c.choices[0].delta.content or "" for c in miss)
    assert text == "This is a mock answer to: Say hello"
    assert [c.model_dump() for c in hit] == [c.model_dump() for c in miss]
    assert len(miss) > 3  # relayed word by word, not as one piece
    assert whole.choices[0].message.content == text


async def test_upstream_that_ignores_stream_is_streamed_by_the_gateway(
    upstream: respx.MockRouter,
) -> None:
    route = upstream.post("/chat/completions").mock(
        return_value=httpx.Response(200, json=chat_response())
    )
    async with streaming(make_settings()) as gw:
        headers, chunks = await _collect(gw)
        _, again = await _collect(gw)
    assert route.call_count == 1
    assert headers["x-cache"] == "MISS"
    assert _message(chunks)["message"]["content"] == "Hello there!"
    assert [c.model_dump() for c in again] == [c.model_dump() for c in chunks]


@pytest.mark.redis
async def test_stream_with_redis_down_is_relayed_as_bypass(
    upstream: respx.MockRouter, redis_server: RedisServer
) -> None:
    route = _sse_route(upstream, HELLO)
    settings = make_settings(cache_backend="redis", redis_url=redis_server.url)
    async with streaming(settings) as gw:
        redis_server.stop()
        headers, chunks = await _collect(gw)
    assert headers["x-cache"] == "BYPASS"
    assert _message(chunks)["message"]["content"] == "Hello!"
    assert route.call_count == 1


@asynccontextmanager
async def _live_upstream(first: asyncio.Event) -> AsyncIterator[str]:
    """A real HTTP provider on a free port (the default aiohttp client cannot be mocked by
    respx): it sends the first chunk, waits for `first` to be set, then the rest."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        start = {"type": "http.response.start", "status": 200}
        await send({**start, "headers": [(b"content-type", b"text/event-stream")]})
        body = {"type": "http.response.body", "more_body": True}
        await send({**body, "body": sse(HELLO[0], done=False)})
        await first.wait()
        await send({**body, "body": sse(*HELLO[1:]), "more_body": False})

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="error")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        await task


async def test_default_aiohttp_client_relays_a_real_provider_stream_live() -> None:
    first = asyncio.Event()
    async with _live_upstream(first) as base_url:
        settings = make_settings(upstream_http_client="aiohttp", openai_base_url=base_url)
        async with streaming(settings) as gw:
            raw = await gw.client.chat.completions.with_raw_response.create(**STREAM)
            stream = raw.parse().__aiter__()
            opening = await asyncio.wait_for(stream.__anext__(), 5)
            first.set()  # the provider sends the rest only now: the first chunk was live
            rest = [c async for c in stream]
            hit = await gw.client.chat.completions.with_raw_response.create(**CHAT)
    assert opening.choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in rest) == "Hello!"
    assert hit.headers["x-cache"] == "HIT"
    assert hit.parse().choices[0].message.content == "Hello!"
