"""The benchmark's "miss limit" does a coalescing miss's Redis work: claim, call once, fill."""

from __future__ import annotations

import uuid

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from bench.miss_limit import MissLimit, Provider
from tests.processes import Service, provider_calls
from tests.test_fake_upstream import proxy_lifespan

pytestmark = pytest.mark.redis


@pytest.mark.parametrize("provider", ["aiohttp", "sdk"])
async def test_a_miss_calls_once_stores_and_releases_then_the_repeat_is_answered_from_redis(
    provider: Provider, live_upstream: Service, redis_url: str
) -> None:
    namespace = f"ml{uuid.uuid4().hex[:8]}"
    app = MissLimit(live_upstream.url, redis_url, provider=provider, namespace=namespace)
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": namespace}]})
    async with proxy_lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://limit") as http:
            first = await http.post("/v1/chat/completions", content=body)
            second = await http.post("/v1/chat/completions", content=body)
    redis = aioredis.Redis.from_url(redis_url)
    try:
        keys = sorted([k.decode() async for k in redis.scan_iter(f"{namespace}:*")])
    finally:
        await redis.aclose()
    assert (first.status_code, first.headers["x-cache"]) == (200, "MISS")
    assert first.json()["object"] == "chat.completion"
    assert (second.headers["x-cache"], second.content) == ("HIT", first.content)
    assert provider_calls(live_upstream) == 1
    assert [k.split(":")[1] for k in keys] == ["e"]  # the entry; the lease was released
