"""The fake upstream the benchmarks and multi-process tests rely on answers like OpenAI."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai

from bench.fake_upstream import FakeUpstream


async def test_fake_upstream_answers_the_sdk_and_counts_calls() -> None:
    fake = FakeUpstream()
    transport = httpx.ASGITransport(app=fake)
    async with httpx.AsyncClient(transport=transport, base_url="http://fake") as http:
        client = openai.AsyncOpenAI(base_url="http://fake/v1", api_key="x", http_client=http)
        chat = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
        chunks = [
            c
            async for c in await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        ]
        emb = await client.embeddings.create(model="e", input=["a", "b"])
        calls = (await http.get("/calls")).json()
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == chat.choices[0].message.content
    assert [d.index for d in emb.data] == [0, 1] and len(emb.data[0].embedding) == 1536
    assert calls["total"] == 3


@contextlib.asynccontextmanager
async def proxy_lifespan(app: Any) -> AsyncIterator[None]:
    """Run a raw ASGI app's lifespan around the block."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.create_task(app({"type": "lifespan"}, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task


async def test_the_sdk_passthrough_relays_through_the_provider_call() -> None:
    """The bench's floor for misses answers what the upstream answered, through the SDK."""
    from bench.sdk_passthrough import SdkPassthrough

    fake = FakeUpstream()
    upstream = httpx.AsyncClient(transport=httpx.ASGITransport(app=fake))
    proxy = SdkPassthrough("http://fake", http_client=upstream)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    async with proxy_lifespan(proxy):
        transport = httpx.ASGITransport(app=proxy)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as http:
            answer = await http.post("/v1/chat/completions", json=body)
        calls = (await upstream.get("http://fake/calls")).json()
    assert answer.status_code == 200
    assert answer.json()["object"] == "chat.completion"
    assert calls["total"] == 1
