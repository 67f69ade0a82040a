"""Embeddings through the HTTP API: an entry per input, exact partial hits, in request order.

The provider is respx-mocked and records exactly which inputs reached it; the tests run on
the memory store and on a real redis-server (`backend`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import numpy as np
import pytest
import redis.asyncio as aioredis
import respx

from genai_api.controls import DEFAULT_CONTROLS
from genai_api.embeddings.vectors import VectorEntry
from genai_api.settings import Settings
from tests.conftest import Calls, make_settings, running, stats_doc, wait_until
from tests.embeddings_provider import (
    MODEL,
    PRICE,
    Item,
    Provider,
    assert_vectors,
    embed,
    tokens_of,
    total,
    vector,
)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest) -> Callable[..., Settings]:
    """Settings for the memory store or a real redis-server."""
    if request.param == "memory":
        return make_settings
    url = request.getfixturevalue("redis_url")

    def redis_settings(**overrides: Any) -> Settings:
        return make_settings(cache_backend="redis", redis_url=url, **overrides)

    return redis_settings


@pytest.fixture
def provider(upstream: respx.MockRouter) -> Provider:
    fake = Provider()
    upstream.post("/embeddings").mock(side_effect=fake)
    return fake


def counts(answer: httpx.Response) -> tuple[int, int, int]:
    """X-Cache-Hits, -Misses, -Coalesced: inputs, adding up to the batch's length."""
    names = ("x-cache-hits", "x-cache-misses", "x-cache-coalesced")
    hits, misses, coalesced = (int(answer.headers[name]) for name in names)
    assert hits + misses + coalesced == len(answer.json()["data"])
    return hits, misses, coalesced


async def test_mixed_batch_sends_only_missing_inputs_and_keeps_order(
    provider: Provider, backend: Callable[..., Settings]
) -> None:
    async with running(backend()) as gw:
        await embed(gw, ["alpha", "gamma delta"])
        batch: list[Item] = ["alpha", "beta", "beta", "gamma delta", "epsilon", "alpha"]
        answer = await embed(gw, batch)
    assert provider.calls == [["alpha", "gamma delta"], ["beta", "epsilon"]]
    assert_vectors(answer, batch)
    assert answer.headers["x-cache"] == "MISS"
    # alpha twice and gamma delta from the cache, beta and epsilon upstream, beta's repeat
    # rides on its first copy's fetch
    assert counts(answer) == (3, 2, 1)
    assert "age" not in answer.headers
    used = total(batch)
    assert answer.json()["usage"] == {"prompt_tokens": used, "total_tokens": used}
    assert answer.json()["model"] == MODEL


async def test_all_hit_batch_is_a_hit_with_age_and_savings(
    provider: Provider, backend: Callable[..., Settings]
) -> None:
    batch: list[Item] = ["one two", "three", "one two"]
    async with running(backend()) as gw:
        first = await embed(gw, batch)
        second = await embed(gw, batch)
    assert provider.sent == ["one two", "three"]
    assert first.headers["x-cache"] == "MISS"
    assert counts(first) == (0, 2, 1)  # the repeat is coalesced, never a hit on a cold cache
    assert second.headers["x-cache"] == "HIT"
    assert counts(second) == (3, 0, 0)
    assert int(second.headers["age"]) >= 0
    assert second.headers["x-cache-saved-tokens"] == str(total(batch))
    assert Decimal(second.headers["x-cache-saved-cost-usd"]) == total(batch) * PRICE
    assert second.headers["x-cache-key"] == first.headers["x-cache-key"]
    assert first.content == second.content


async def test_float_and_base64_share_entries_and_equal_vectors_through_the_sdk(
    provider: Provider, backend: Callable[..., Settings]
) -> None:
    texts = ["the quick brown fox", "jumps"]
    async with running(backend()) as gw:
        # The SDK asks for base64 by default and decodes it with numpy.
        sdk = await gw.client.embeddings.with_raw_response.create(model=MODEL, input=texts)
        floats = await gw.client.embeddings.with_raw_response.create(
            model=MODEL, input=texts, encoding_format="float"
        )
        b64 = await embed(gw, texts, encoding_format="base64")
    assert len(provider.calls) == 1
    assert provider.bodies[0]["encoding_format"] == "base64"
    assert (sdk.headers["x-cache"], floats.headers["x-cache"]) == ("MISS", "HIT")
    assert b64.headers["x-cache"] == "HIT"
    assert isinstance(floats.http_response.json()["data"][0]["embedding"], list)
    for text, a, b in zip(texts, sdk.parse().data, floats.parse().data, strict=True):
        expected = vector(text)
        assert np.array_equal(np.asarray(a.embedding, "<f4"), expected)
        assert np.array_equal(np.asarray(b.embedding, "<f4"), expected)
    for text, item in zip(texts, b64.json()["data"], strict=True):
        assert item["embedding"] == base64.b64encode(vector(text).tobytes()).decode()


async def test_provider_answering_floats_is_stored_exactly(
    upstream: respx.MockRouter, backend: Callable[..., Settings]
) -> None:
    fake = Provider(floats=True)
    upstream.post("/embeddings").mock(side_effect=fake)
    async with running(backend()) as gw:
        first = await embed(gw, ["x", "y"], encoding_format="base64")
        second = await embed(gw, ["y", "x"])
    assert_vectors(first, ["x", "y"])
    assert_vectors(second, ["y", "x"])
    assert second.headers["x-cache"] == "HIT"


async def test_token_array_inputs_are_entries_of_their_own(
    provider: Provider, backend: Callable[..., Settings]
) -> None:
    async with running(backend()) as gw:
        batch = await embed(gw, [[1, 2, 3], [40, 50]])
        single = await embed(gw, [1, 2, 3])
        text = await embed(gw, ["hello"])
    assert provider.calls == [[[1, 2, 3], [40, 50]], ["hello"]]
    assert_vectors(batch, [[1, 2, 3], [40, 50]])
    assert_vectors(single, [[1, 2, 3]])
    assert batch.json()["usage"]["prompt_tokens"] == 5  # token arrays: their length
    assert single.headers["x-cache"] == "HIT"
    assert single.json()["usage"]["prompt_tokens"] == 3
    assert text.headers["x-cache"] == "MISS"


async def test_5000_input_batch_goes_upstream_in_three_chunks(
    provider: Provider, backend: Callable[..., Settings]
) -> None:
    batch: list[Item] = [f"text {i}" for i in range(5000)]
    async with running(backend()) as gw:
        await embed(gw, batch[:100])
        first = await embed(gw, batch)
        second = await embed(gw, batch)
    sizes = sorted(len(call) for call in provider.calls[1:])
    assert sizes == [804, 2048, 2048]
    sent = [item for call in provider.calls[1:] for item in call]
    assert sorted(map(str, sent)) == sorted(batch[100:])  # each missing input exactly once
    assert counts(first) == (100, 4900, 0)
    assert_vectors(first, batch)
    assert second.headers["x-cache"] == "HIT"
    assert second.content == first.content
    assert first.json()["usage"]["prompt_tokens"] == total(batch)


async def test_concurrent_batches_fetch_each_shared_input_once(
    provider: Provider, backend: Callable[..., Settings]
) -> None:
    provider.gate = asyncio.Event()
    async with running(backend()) as gw:
        a = asyncio.create_task(embed(gw, ["x", "y", "z"]))
        await asyncio.wait_for(provider.arrived.acquire(), 5)
        b = asyncio.create_task(embed(gw, ["w", "z", "y", "w"]))
        await asyncio.wait_for(provider.arrived.acquire(), 5)
        provider.gate.set()
        first, second = await asyncio.gather(a, b)
    assert provider.calls == [["x", "y", "z"], ["w"]]
    assert_vectors(first, ["x", "y", "z"])
    assert_vectors(second, ["w", "z", "y", "w"])
    assert second.headers["x-cache"] == "MISS"
    assert counts(second) == (0, 1, 3)  # z and y from the other flight, w's repeat


async def test_batch_inside_another_batchs_flight_is_coalesced(
    provider: Provider, backend: Callable[..., Settings]
) -> None:
    provider.gate = asyncio.Event()
    async with running(backend()) as gw:
        flights = Calls(gw.gateway.pipeline.embeddings.flights, "run")
        a = asyncio.create_task(embed(gw, ["x", "y", "z"]))
        await asyncio.wait_for(provider.arrived.acquire(), 5)
        b = asyncio.create_task(embed(gw, ["z", "x"]))
        await wait_until(lambda: flights.count == 2, within=30)  # b looked up, joined a's flight
        provider.gate.set()
        first, second = await asyncio.gather(a, b)
        stats = stats_doc(await gw.http.get("/v1/cache/stats"))
    assert provider.calls == [["x", "y", "z"]]
    assert first.headers["x-cache"] == "MISS"
    assert second.headers["x-cache"] == "COALESCED"
    assert second.headers["x-cache-saved-tokens"] == str(total(["z", "x"]))
    assert_vectors(second, ["z", "x"])
    assert (stats["misses"], stats["coalesced"], stats["hits"]) == (3, 2, 0)


async def test_stats_count_inputs_and_exact_saved_tokens(
    provider: Provider, backend: Callable[..., Settings]
) -> None:
    async with running(backend()) as gw:
        await embed(gw, ["a b c", "d"])
        await embed(gw, ["a b c", "d", "e f", "e f"])
        stats = stats_doc(await gw.http.get("/v1/cache/stats"))
    model = stats["by_model"][MODEL]
    # 1st: 2 misses; 2nd: 2 hits, 1 miss and 1 repeat of that miss (coalesced)
    assert (model["hits"], model["misses"], model["coalesced"]) == (2, 3, 1)
    saved = total(["a b c", "d", "e f"])
    assert model["tokens_saved"] == {"prompt": saved, "completion": 0, "total": saved}
    assert Decimal(model["cost_saved_usd"]) == saved * PRICE
    assert Decimal(model["cost_spent_usd"]) == saved * PRICE  # what was sent upstream


async def test_no_store_bypasses_and_no_cache_refreshes(
    provider: Provider, backend: Callable[..., Settings]
) -> None:
    async with running(backend()) as gw:
        bypass = await embed(gw, ["p", "p"], headers={"Cache-Control": "no-store"})
        await embed(gw, ["q"])
        fresh = await embed(gw, ["q", "p"], headers={"Cache-Control": "no-cache"})
        hit = await embed(gw, ["p"])
    assert provider.calls == [["p"], ["q"], ["q", "p"]]
    assert bypass.headers["x-cache"] == "BYPASS"
    assert bypass.headers["x-cache-misses"] == "1"
    assert fresh.headers["x-cache"] == "MISS"
    assert hit.headers["x-cache"] == "HIT"  # the no-cache answer was stored
    assert_vectors(bypass, ["p", "p"])


async def test_unlisted_parameters_reach_the_provider_and_key_the_entry(
    provider: Provider, backend: Callable[..., Settings]
) -> None:
    async with running(backend()) as gw:
        await embed(gw, ["doc"], input_type="query", user="u1", dimensions=8)
        same = await embed(gw, ["doc"], input_type="query", user="u2", dimensions=8)
        other = await embed(gw, ["doc"], input_type="passage", dimensions=8)
    assert provider.bodies[0] == {
        "model": MODEL,
        "input": ["doc"],
        "input_type": "query",
        "user": "u1",
        "dimensions": 8,
        "encoding_format": "base64",
    }
    assert same.headers["x-cache"] == "HIT"
    assert other.headers["x-cache"] == "MISS"


async def test_mock_provider_serves_embeddings_offline() -> None:
    async with running(make_settings(provider="mock")) as gw:
        first = await gw.client.embeddings.with_raw_response.create(
            model=MODEL, input=["hi", "there"]
        )
        second = await gw.client.embeddings.with_raw_response.create(
            model=MODEL, input=["there"], encoding_format="float"
        )
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    there = first.parse().data[1].embedding
    assert len(there) == 1536
    assert np.array_equal(
        np.asarray(there, "<f4"), np.asarray(second.parse().data[0].embedding, "<f4")
    )


@pytest.mark.redis
async def test_store_down_still_answers_with_bypass(provider: Provider, redis_server: Any) -> None:
    settings = make_settings(cache_backend="redis", redis_url=redis_server.url)
    async with running(settings) as gw:
        redis_server.stop()
        answer = await embed(gw, ["a", "b", "a"])
    assert answer.headers["x-cache"] == "BYPASS"
    assert provider.calls == [["a", "b"]]
    assert_vectors(answer, ["a", "b", "a"])


@pytest.mark.redis
async def test_entries_have_their_own_ttls_and_compact_shape(
    provider: Provider, redis_url: str
) -> None:
    settings = make_settings(cache_backend="redis", redis_url=redis_url)
    async with running(settings) as gw:
        await embed(gw, [f"t{i}" for i in range(20)])
        await embed(gw, ["fixed"], headers={"X-Cache-TTL": "120"})
    client = aioredis.from_url(redis_url)
    try:
        keys = [
            k
            async for k in client.scan_iter(match=f"{settings.cache_namespace}:*")
            if b":stats:" not in k
        ]
        assert len(keys) == 21
        assert all(b":e:emb:" in k and MODEL.encode() in k for k in keys)
        ttls = {k: await client.pttl(k) for k in keys}
        fixed = [k for k in keys if ttls[k] <= 120_000]
        assert len(fixed) == 1 and ttls[fixed[0]] > 115_000
        jittered = [t for k, t in ttls.items() if k not in fixed]
        assert all(3240_000 - 5000 <= t <= 3960_000 for t in jittered)
        assert len(set(jittered)) > 1  # jitter: entries written together expire apart
        raw = await client.get(fixed[0])
    finally:
        await client.aclose()
    entry = VectorEntry.decode(raw)
    assert raw[:2] == b"E2" and entry is not None
    assert np.array_equal(np.frombuffer(entry.vector, "<f4"), vector("fixed"))
    assert entry.tokens == tokens_of("fixed")


@pytest.mark.redis
async def test_stored_1536_dim_entry_uses_at_most_115_percent_of_raw_size(
    upstream: respx.MockRouter, redis_url: str
) -> None:
    fake = Provider(dims=1536)
    upstream.post("/embeddings").mock(side_effect=fake)
    settings = make_settings(cache_backend="redis", redis_url=redis_url)
    async with running(settings) as gw:
        await embed(gw, [f"document {i}" for i in range(10)])
    client = aioredis.from_url(redis_url)
    try:
        keys = [
            k
            async for k in client.scan_iter(match=f"{settings.cache_namespace}:*")
            if b":stats:" not in k
        ]
        usage = [await client.memory_usage(k) for k in keys]
    finally:
        await client.aclose()
    assert len(usage) == 10
    assert max(usage) <= 1.15 * 6144, usage


async def test_failed_chunk_is_relayed_and_the_other_chunks_are_kept(
    upstream: respx.MockRouter, backend: Callable[..., Settings]
) -> None:
    fake = Provider()
    error = {"error": {"message": "overloaded", "type": "server_error", "param": None}}

    async def flaky(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content)["input"][0] == "text 2048" and len(fake.calls) < 2:
            fake.calls.append([])
            return httpx.Response(503, json=error)
        return await fake(request)

    upstream.post("/embeddings").mock(side_effect=flaky)
    batch: list[Item] = [f"text {i}" for i in range(3000)]
    async with running(backend()) as gw:
        failed = await gw.http.post(
            "/v1/embeddings",
            json={"model": MODEL, "input": batch},
            headers={"Authorization": "Bearer client-key"},
        )
        retry = await embed(gw, batch)
    assert failed.status_code == 503
    assert failed.json()["error"]["message"] == "overloaded"
    assert fake.calls[-1] == batch[2048:]  # the retry sent only what had failed
    assert counts(retry) == (2048, 952, 0)
    assert_vectors(retry, batch)


async def test_invalidation_by_model_deletes_embedding_entries(
    provider: Provider, backend: Callable[..., Settings]
) -> None:
    async with running(backend()) as gw:
        await embed(gw, ["a", "b"])
        deleted = await gw.http.request("DELETE", "/v1/cache", json={"model": MODEL})
        again = await embed(gw, ["a", "b"])
    assert deleted.json() == {"deleted": 2}
    assert again.headers["x-cache"] == "MISS"
    assert len(provider.calls) == 2


async def test_max_age_turns_older_entries_into_misses(
    provider: Provider, backend: Callable[..., Settings]
) -> None:
    async with running(backend()) as gw:
        await embed(gw, ["old", "new"])
        # Age the stored "old" entry by 100 s, as if it had been written then.
        batch = await gw.gateway.pipeline.prepare_embeddings(
            {"model": MODEL, "input": ["old"]},
            ["old"],
            model=gw.gateway.models.get(MODEL),
            tenant=gw.gateway.auth.tenant_id("client-key"),
            controls=DEFAULT_CONTROLS,
            encoding=None,
        )
        entry = VectorEntry(vector("old").tobytes(), 1, time.time() - 100)
        await gw.gateway.store.set(batch.skeys[0], entry.encode(), 60)
        hit = await embed(gw, ["old", "new"])
        fresh = await embed(gw, ["old", "new"], headers={"Cache-Control": "max-age=50"})
    assert hit.headers["x-cache"] == "HIT"
    assert 100 <= int(hit.headers["age"]) < 110  # the oldest entry used
    assert fresh.headers["x-cache"] == "MISS"
    assert counts(fresh) == (1, 1, 0)
    assert provider.calls == [["old", "new"], ["old"]]
