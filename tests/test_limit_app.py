"""The benchmark's "limit" answers stored bytes with one Redis round trip per request."""

from __future__ import annotations

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from bench.limit_app import LimitApp, chat_key, embedding_key

pytestmark = pytest.mark.redis


async def test_limit_answers_stored_chat_bytes_and_splices_embeddings(redis_url: str) -> None:
    app = LimitApp(redis_url)
    app.redis = aioredis.Redis.from_url(redis_url)
    body = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
    await app.redis.set(chat_key(body), b'{"stored":true}')
    await app.redis.mset(
        {embedding_key("float", "a"): b"[0.5,1.0]", embedding_key("float", "b"): b"[2.0]"}
    )
    request = {"model": "e", "input": ["a", "b"], "encoding_format": "float"}
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://limit") as http:
            chat = await http.post("/v1/chat/completions", content=body)
            missing = await http.post("/v1/chat/completions", content=body + b" ")
            emb = await http.post("/v1/embeddings", content=orjson.dumps(request))
    finally:
        await app.redis.aclose()
    assert (chat.status_code, chat.content) == (200, b'{"stored":true}')
    assert missing.status_code == 404
    assert [d["embedding"] for d in emb.json()["data"]] == [[0.5, 1.0], [2.0]]
    assert [d["index"] for d in emb.json()["data"]] == [0, 1]
