"""Sliding expiration (`sliding = true` in the models file): each hit sets the entry's TTL
back to the one it was stored with, at most CACHE_MAX_TTL; hot answers stay, cold ones expire.

On a real Redis (through the leases' claim script and the L1) and in memory.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
import respx

from genai_api.entry import Entry, stored_ttl_ms
from genai_api.errors import ConfigError
from genai_api.models.file import read_models_file
from genai_api.store.memory import MemoryStore
from genai_api.store.near import NearStore
from tests.conftest import CHAT, chat_response, make_settings, running, wait_until
from tests.embeddings_provider import MODEL as EMBED_MODEL
from tests.embeddings_provider import Provider as EmbeddingsProvider
from tests.embeddings_provider import embed
from tests.redis_server import RedisServer


def _models(tmp_path: Path, *, sliding: bool, ttl: int = 3600) -> Path:
    path = tmp_path / f"models-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(f'[models."gpt-4o-mini"]\nttl = {ttl}\nsliding = {str(sliding).lower()}\n')
    return path


def _redis(url: str, models: Path, namespace: str | None = None, **overrides: Any) -> Any:
    return make_settings(
        cache_backend="redis",
        redis_url=url,
        models_file=models,
        cache_namespace=namespace or f"t{uuid.uuid4().hex[:12]}",
        **overrides,
    )


async def _post(gw: Any) -> str:
    answer = await gw.http.post("/v1/chat/completions", json=CHAT)
    assert answer.status_code == 200
    return str(answer.headers["x-cache"])


async def _entry_key(url: str, namespace: str) -> str:
    client = aioredis.from_url(url)
    try:
        (key,) = [k async for k in client.scan_iter(f"{namespace}:e:*")]
        return str(key.decode())
    finally:
        await client.aclose()


async def _redis_call(url: str, *command: Any) -> Any:
    client = aioredis.from_url(url)
    try:
        return await client.execute_command(*command)
    finally:
        await client.aclose()


# --- the stored TTL and the models file


def test_an_entry_carries_the_ttl_it_was_stored_with_first() -> None:
    raw = Entry.fresh(chat_response(), model="gpt-4o-mini").encode(3456.7891)
    assert raw.startswith(b'{"v":1,"ttl_ms":3456789,')
    assert stored_ttl_ms(raw) == 3456789
    assert stored_ttl_ms(Entry.fresh(chat_response(), model="m").encode()) is None
    forged = Entry.fresh(chat_response('{"v":1,"ttl_ms":99}'), model="m").encode()
    assert stored_ttl_ms(forged) is None  # the response's own text cannot pass for it


def test_sliding_is_a_boolean_of_the_models_file(tmp_path: Path) -> None:
    assert read_models_file(_models(tmp_path, sliding=True)).models["gpt-4o-mini"]["sliding"]
    bad = tmp_path / "bad.toml"
    bad.write_text('[models."m"]\nsliding = "yes"\n')
    with pytest.raises(ConfigError, match="sliding: must be true or false"):
        read_models_file(bad)


# --- Redis


@pytest.mark.redis
@pytest.mark.parametrize("sliding", [True, False])
async def test_a_hit_sets_the_ttl_back_only_when_sliding(
    upstream: respx.MockRouter, redis_server: RedisServer, tmp_path: Path, sliding: bool
) -> None:
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    settings = _redis(redis_server.url, _models(tmp_path, sliding=sliding))
    async with running(settings) as gw:
        await wait_until(lambda: gw.gateway.store.listening)
        assert await _post(gw) == "MISS"
        key = await _entry_key(redis_server.url, settings.cache_namespace)
        stored = stored_ttl_ms(await _redis_call(redis_server.url, "GET", key))
        assert stored is not None and 3240_000 <= stored <= 3960_000  # 3600 s, ±10 % jitter
        await _redis_call(redis_server.url, "PEXPIRE", key, 5000)
        assert await _post(gw) == "HIT"  # not in the L1 yet: read (and extended) in Redis
        ttl = await _redis_call(redis_server.url, "PTTL", key)
    if sliding:
        assert stored - 2000 < ttl <= stored
    else:
        assert ttl <= 5000


@pytest.mark.redis
async def test_the_ttl_set_back_is_at_most_cache_max_ttl(
    upstream: respx.MockRouter, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Stored under a larger CACHE_MAX_TTL, extended by a gateway with a smaller one."""
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    models, namespace = _models(tmp_path, sliding=True), f"t{uuid.uuid4().hex[:12]}"
    async with running(_redis(redis_server.url, models, namespace)) as gw:
        assert await _post(gw) == "MISS"
    smaller = {"cache_max_ttl": 100, "cache_default_ttl": 100}  # the default may not exceed it
    async with running(_redis(redis_server.url, models, namespace, **smaller)) as gw:
        assert await _post(gw) == "HIT"
        ttl = await _redis_call(
            redis_server.url, "PTTL", await _entry_key(redis_server.url, namespace)
        )
    assert 98_000 < ttl <= 100_000


@pytest.mark.redis
@pytest.mark.parametrize("sliding", [True, False])
async def test_a_hot_answer_stays_and_a_cold_one_expires(
    upstream: respx.MockRouter, redis_server: RedisServer, tmp_path: Path, sliding: bool
) -> None:
    """A 1 s TTL (0.9-1.1 s with the jitter), the L1's default 2 s hold: asked every 0.1 s
    for 1.8 s, well past the TTL, a sliding entry is a HIT throughout (the L1 holds it for half
    its TTL, and the read after that extends it); a fixed one expires once. Left alone for
    longer than the TTL, the sliding one expires too."""
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    settings = _redis(redis_server.url, _models(tmp_path, sliding=sliding, ttl=1))
    async with running(settings) as gw:
        assert isinstance(gw.gateway.store, NearStore)
        await wait_until(lambda: gw.gateway.store.listening)
        assert await _post(gw) == "MISS"
        seen = []
        for _ in range(18):
            await asyncio.sleep(0.1)
            seen.append(await _post(gw))
        await asyncio.sleep(1.3)
        cold = await _post(gw)
    if sliding:
        assert set(seen) == {"HIT"}
    else:
        assert "MISS" in seen
    assert cold == "MISS"


# --- memory


async def test_memory_store_sets_the_ttl_back_on_a_sliding_read() -> None:
    store = MemoryStore()
    raw = Entry.fresh(chat_response(), model="m").encode(0.3)
    await store.set("k", raw, 0.3)
    await asyncio.sleep(0.2)
    assert await store.get("k", slide_ms=60_000) == raw  # back to 0.3 s from now
    await asyncio.sleep(0.2)
    assert await store.get("k") == raw  # 0.4 s after the store: still there
    await asyncio.sleep(0.35)
    assert await store.get("k") is None  # a plain read does not extend
    await store.close()


@pytest.mark.parametrize("sliding", [True, False])
async def test_a_hot_answer_stays_in_memory(
    upstream: respx.MockRouter, tmp_path: Path, sliding: bool
) -> None:
    """A 1 s TTL (0.9-1.1 s with the jitter), asked every 0.1 s for 1.5 s: a sliding entry is
    a HIT throughout, a fixed one expires once; left alone 1.3 s, either expires."""
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    async with running(make_settings(models_file=_models(tmp_path, sliding=sliding, ttl=1))) as gw:
        assert await _post(gw) == "MISS"
        seen = []
        for _ in range(15):
            await asyncio.sleep(0.1)
            seen.append(await _post(gw))
        await asyncio.sleep(1.3)
        cold = await _post(gw)
    assert (set(seen) == {"HIT"}) is sliding
    assert cold == "MISS"


def test_entries_are_json_as_before() -> None:
    """The TTL field changes nothing else: older gateways read new entries."""
    entry = Entry.fresh(chat_response(), model="gpt-4o-mini")
    doc = orjson.loads(entry.encode(60))
    assert list(doc) == ["v", "ttl_ms", "stored_at", "model", "usage", "response"]
    assert Entry.decode(entry.encode(60)) == Entry.decode(entry.encode())


# --- embeddings: the model's TTL (a vector entry carries none of its own)


def _embedding_models(tmp_path: Path, *, sliding: bool) -> Path:
    path = tmp_path / f"emb-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(f'[models."{EMBED_MODEL}"]\nttl = 600\nsliding = {str(sliding).lower()}\n')
    return path


@pytest.mark.redis
@pytest.mark.parametrize("sliding", [True, False])
async def test_an_embeddings_hit_gives_its_entries_the_model_ttl_when_sliding(
    upstream: respx.MockRouter, redis_server: RedisServer, tmp_path: Path, sliding: bool
) -> None:
    upstream.post("/embeddings").mock(side_effect=EmbeddingsProvider())
    settings = _redis(redis_server.url, _embedding_models(tmp_path, sliding=sliding))
    async with running(settings) as gw:
        assert (await embed(gw, ["one", "two"])).headers["x-cache"] == "MISS"
        client = aioredis.from_url(redis_server.url)
        keys = [k async for k in client.scan_iter(f"{settings.cache_namespace}:e:*")]
        for key in keys:
            await client.pexpire(key, 5000)
        assert (await embed(gw, ["one", "two"])).headers["x-cache"] == "HIT"
        ttls = [await client.pttl(key) for key in keys]
        await client.aclose()
    assert len(keys) == 2
    if sliding:
        assert all(590_000 < ttl <= 600_000 for ttl in ttls), ttls
    else:
        assert all(ttl <= 5000 for ttl in ttls), ttls


async def test_an_embeddings_hit_in_memory_keeps_a_sliding_entry(
    upstream: respx.MockRouter, tmp_path: Path
) -> None:
    path = tmp_path / "emb.toml"
    path.write_text(f'[models."{EMBED_MODEL}"]\nttl = 1\nsliding = true\n')
    upstream.post("/embeddings").mock(side_effect=EmbeddingsProvider())
    async with running(make_settings(models_file=path)) as gw:
        await embed(gw, ["hot"])
        seen = []
        for _ in range(15):
            await asyncio.sleep(0.1)
            seen.append((await embed(gw, ["hot"])).headers["x-cache"])
    assert set(seen) == {"HIT"}
