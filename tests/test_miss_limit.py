"""The benchmark's "miss limit" does a coalescing miss's Redis work: claim, call once, fill."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from bench.miss_limit import MissLimit, Provider
from tests.processes import Service, fake_upstream, provider_calls
from tests.test_fake_upstream import proxy_lifespan

pytestmark = pytest.mark.redis


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Service]:
    service = fake_upstream(tmp_path, latency_ms=0)
    try:
        yield service
    finally:
        service.stop()


@pytest.mark.parametrize("provider", ["aiohttp", "sdk"])
async def test_a_miss_calls_once_stores_and_releases_then_the_repeat_is_answered_from_redis(
    provider: Provider, upstream: Service, redis_url: str
) -> None:
    namespace = f"ml{uuid.uuid4().hex[:8]}"
    app = MissLimit(upstream.url, redis_url, provider=provider, namespace=namespace)
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
    assert provider_calls(upstream) == 1
    assert [k.split(":")[1] for k in keys] == ["e"]  # the entry; the lease was released
