"""Streaming through the gateway with the official openai client: relayed live, stored once,
replayed faithfully both ways, fanned out to concurrent waiters."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import respx

from genai_api.entry import Entry
from tests.conftest import CHAT, Calls, chat_response, wait_until
from tests.streaming_client import (
    HELLO,
    REASONING,
    STREAM,
    TOKEN,
    TOOLS,
    HeldStream,
    assembled,
    chunk,
    collect,
    landed,
    live_upstream,
    make_settings,
    raw_text,
    sse,
    sse_route,
    streaming,
    usage_chunk,
)


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
    route = sse_route(upstream, HELLO)
    async with streaming(make_settings()) as gw:
        miss_headers, miss = await raw_text(gw, STREAM)
        hit_headers, hit = await raw_text(gw, STREAM)
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
    route = sse_route(upstream, chunks)
    async with streaming(make_settings()) as gw:
        _, streamed = await collect(gw)
        raw = await gw.client.chat.completions.with_raw_response.create(**CHAT)
    assert route.call_count == 1
    assert raw.headers["x-cache"] == "HIT"
    whole = raw.parse()
    choice = whole.choices[0]
    expected = assembled(streamed)
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
        headers, chunks = await collect(gw, stream_options={"include_usage": True})
        _, text = await raw_text(gw, STREAM)
    assert route.call_count == 1
    assert headers["x-cache"] == "HIT"
    assert text.endswith(b"data: [DONE]\n\n")
    streamed = assembled(chunks)
    assert streamed["message"] == whole.choices[0].message.model_dump(exclude_none=True)
    assert streamed["finish_reason"] == "tool_calls"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 17
    assert any(c.choices and c.choices[0].logprobs for c in chunks)


async def test_include_usage_is_honoured_on_miss_and_hit(upstream: respx.MockRouter) -> None:
    sse_route(upstream, HELLO)
    async with streaming(make_settings()) as gw:
        _, plain_miss = await collect(gw)
        _, usage_hit = await collect(gw, stream_options={"include_usage": True})
        _, plain_hit = await collect(gw)
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
    stats = await gw.gateway.accounting.snapshot()
    assert (stats["misses"], stats["coalesced"]) == (1, 2)


async def _send_after_start(held: HeldStream, *chunks: dict[str, Any]) -> None:
    await held.called.wait()
    held.send(*chunks)


async def test_non_stream_request_joins_a_streamed_flight(upstream: respx.MockRouter) -> None:
    held = HeldStream()
    route = upstream.post("/chat/completions").mock(side_effect=held)
    async with streaming(make_settings()) as gw:
        joins = Calls(gw.gateway.pipeline.coalescer, "join")
        held.send(HELLO[0])
        raw = await gw.client.chat.completions.with_raw_response.create(**STREAM)
        whole = asyncio.create_task(gw.client.chat.completions.with_raw_response.create(**CHAT))
        await wait_until(lambda: joins.count == 2, within=30)  # it joined the flight
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
        joins = Calls(gw.gateway.pipeline.coalescer, "join")
        whole = asyncio.create_task(gw.client.chat.completions.create(**CHAT))
        await asyncio.wait_for(called.wait(), 5)  # the non-streamed flight is in the air
        streamed = asyncio.create_task(collect(gw))
        await wait_until(lambda: joins.count == 2, within=30)  # it joined the flight
        release.set()
        await whole
        headers, chunks = await streamed
    assert route.call_count == 1
    assert headers["x-cache"] == "COALESCED"
    assert assembled(chunks)["message"]["content"] == "Hello there!"


async def test_no_store_stream_is_relayed_and_not_stored(upstream: respx.MockRouter) -> None:
    route = sse_route(upstream, HELLO)
    async with streaming(make_settings()) as gw:
        headers, _ = await collect(gw, extra_headers={"Cache-Control": "no-store"})
        again, chunks = await collect(gw)
    assert headers["x-cache"] == "BYPASS"
    assert again["x-cache"] == "MISS"
    assert route.call_count == 2
    assert assembled(chunks)["message"]["content"] == "Hello!"


async def test_n_choices_stream_into_one_entry(upstream: respx.MockRouter) -> None:
    chunks = [
        chunk({"role": "assistant", "content": "A"}, index=0),
        chunk({"role": "assistant", "content": "B"}, index=1),
        chunk({"content": "a"}, index=0),
        chunk(finish="stop", index=1),
        chunk(finish="length", index=0),
        usage_chunk(),
    ]
    sse_route(upstream, chunks)
    async with streaming(make_settings()) as gw:
        await collect(gw, n=2)
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
    route = sse_route(upstream, TOOLS)
    settings = make_settings(cache_backend="redis", redis_url=redis_url)
    async with streaming(settings) as gw:
        _, miss = await raw_text(gw, STREAM)
        # The stream ends before its flight's store does: a request in between joins that
        # flight (COALESCED), which this test is not about.
        await landed(gw)
        _, hit = await raw_text(gw, STREAM)
        whole = await gw.client.chat.completions.with_raw_response.create(**CHAT)
    assert route.call_count == 1
    assert hit == miss
    assert whole.headers["x-cache"] == "HIT"
    client = aioredis.from_url(redis_url)
    try:
        keys = [
            k
            async for k in client.scan_iter(match=f"{settings.cache_namespace}:*")
            if b":stats:" not in k
        ]
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


async def test_mock_provider_streams_and_caches() -> None:
    async with streaming(make_settings(provider="mock")) as gw:
        miss_headers, miss = await collect(gw)
        hit_headers, hit = await collect(gw)
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
        headers, chunks = await collect(gw)
        _, again = await collect(gw)
    assert route.call_count == 1
    assert headers["x-cache"] == "MISS"
    assert assembled(chunks)["message"]["content"] == "Hello there!"
    assert [c.model_dump() for c in again] == [c.model_dump() for c in chunks]


async def test_default_aiohttp_client_relays_a_real_provider_stream_live() -> None:
    first = asyncio.Event()
    async with live_upstream(first) as base_url:
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
