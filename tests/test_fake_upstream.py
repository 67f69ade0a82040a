"""The fake upstream the benchmarks and multi-process tests rely on answers like OpenAI."""

from __future__ import annotations

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
