"""Savings through the HTTP API: a known mix of answers adds up to the token and the cent,
on one process's memory and on two app instances sharing one real Redis."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx

from tests.conftest import (
    Running,
    chat_response,
    completion_response,
    make_settings,
    running,
    stats_doc,
)

MINI = "gpt-4o-mini"  # 0.15 / 0.60 USD per 1M tokens
INSTRUCT = "gpt-3.5-turbo-instruct"  # 1.50 / 2.00


def chat(text: str) -> dict[str, Any]:
    return {"model": MINI, "messages": [{"role": "user", "content": text}]}


COMPLETION = {"model": INSTRUCT, "prompt": "hello"}

# Semantic hits are counted apart (models that opt in); none here.
NO_SEMANTIC = {
    "semantic_hits": 0,
    "semantic_hit_ratio": 0.0,
    "semantic_tokens_saved": {"prompt": 0, "completion": 0, "total": 0},
    "semantic_cost_saved_usd": Decimal(0),
}
# By hand: one chat answer costs (1200 * 0.15 + 345 * 0.60) / 1e6 = 0.000387 USD,
# one completion (3 * 1.50 + 2 * 2.00) / 1e6 = 0.0000085 USD.
EXPECTED_MINI = {
    "hits": 4,
    "misses": 2,
    "coalesced": 4,
    "bypassed": 1,
    "errors": 0,
    "provider_errors": 0,
    "hit_ratio": Decimal("0.727273"),  # 8 / 11
    "tokens_saved": {"prompt": 9600, "completion": 2760, "total": 12360},
    "cost_saved_usd": Decimal("0.003096"),  # 8 * 0.000387
    "cost_spent_usd": Decimal("0.001161"),  # 3 * 0.000387
    **NO_SEMANTIC,
}
EXPECTED_INSTRUCT = {
    "hits": 2,
    "misses": 1,
    "coalesced": 0,
    "bypassed": 0,
    "errors": 0,
    "provider_errors": 0,
    "hit_ratio": Decimal("0.666667"),
    "tokens_saved": {"prompt": 6, "completion": 4, "total": 10},
    "cost_saved_usd": Decimal("0.000017"),
    "cost_spent_usd": Decimal("0.0000085"),
    **NO_SEMANTIC,
}
EXPECTED_TOTAL = {
    "hits": 6,
    "misses": 3,
    "coalesced": 4,
    "bypassed": 1,
    "errors": 0,
    "provider_errors": 0,
    "hit_ratio": Decimal("0.714286"),  # 10 / 14
    "tokens_saved": {"prompt": 9606, "completion": 2764, "total": 12370},
    "cost_saved_usd": Decimal("0.003113"),
    "cost_spent_usd": Decimal("0.0011695"),
    **NO_SEMANTIC,
    "by_model": {INSTRUCT: EXPECTED_INSTRUCT, MINI: EXPECTED_MINI},
}


def provider(upstream: respx.MockRouter) -> asyncio.Event:
    """A provider with fixed usage; chats about "slow" wait for the returned event."""
    release = asyncio.Event()

    async def answer_chat(request: httpx.Request) -> httpx.Response:
        if b"slow" in request.content:
            await release.wait()
        return httpx.Response(200, json=chat_response(prompt=1200, completion=345))

    upstream.post("/chat/completions").mock(side_effect=answer_chat)
    upstream.post("/completions").mock(
        return_value=httpx.Response(200, json=completion_response(prompt=3, completion=2))
    )
    return release


async def known_mix(gws: list[Running], release: asyncio.Event) -> list[httpx.Response]:
    """3 misses, 6 hits, 4 coalesced, 1 bypass, spread over the given app instances."""
    answers: list[httpx.Response] = []

    async def post(i: int, path: str, body: dict[str, Any], **kw: Any) -> None:
        answers.append(await gws[i % len(gws)].http.post(path, json=body, **kw))

    await post(0, "/v1/chat/completions", chat("a"))  # MISS
    for i in range(1, 4):
        await post(i, "/v1/chat/completions", chat("a"))  # 3 HIT
    await post(1, "/v1/chat/completions", chat("a"), headers={"Cache-Control": "no-store"})
    await post(1, "/v1/completions", COMPLETION)  # MISS
    await post(0, "/v1/completions", COMPLETION)  # HIT
    await post(1, "/v1/completions", COMPLETION)  # HIT
    # Five identical requests at once: release the provider only when all five have looked
    # the key up (or found its flight running and skipped the lookup), so four must wait on
    # the one flight.
    pipeline = gws[0].gateway.pipeline
    real_read, lookups, all_looked = pipeline._read, 0, asyncio.Event()

    async def counted_read(call: Any) -> Any:
        nonlocal lookups
        value = await real_read(call)
        lookups += 1
        if lookups == 5:
            all_looked.set()
        return value

    pipeline._read = counted_read
    try:
        flight = [
            asyncio.create_task(gws[0].http.post("/v1/chat/completions", json=chat("slow")))
            for _ in range(5)
        ]
        await asyncio.wait_for(all_looked.wait(), 10)
    finally:
        pipeline._read = real_read
    release.set()
    answers += await asyncio.gather(*flight)  # 1 MISS + 4 COALESCED
    await post(1, "/v1/chat/completions", chat("slow"))  # HIT
    return answers


def without_since(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "since"}


async def test_known_mix_adds_up_to_the_token_and_cent(upstream: respx.MockRouter) -> None:
    release = provider(upstream)
    async with running(make_settings()) as gw:
        answers = await known_mix([gw], release)
        stats = stats_doc(await gw.http.get("/v1/cache/stats"))
    statuses = sorted(a.headers["x-cache"] for a in answers)
    assert statuses.count("COALESCED") == 4 and statuses.count("MISS") == 3
    assert without_since(stats) == EXPECTED_TOTAL
    assert stats["since"].endswith("Z")


async def test_saved_headers_sum_to_the_stats_exactly(upstream: respx.MockRouter) -> None:
    release = provider(upstream)
    async with running(make_settings()) as gw:
        answers = await known_mix([gw], release)
        stats = stats_doc(await gw.http.get("/v1/cache/stats"))
    saved = [a for a in answers if "x-cache-saved-cost-usd" in a.headers]
    assert len(saved) == 10
    assert (
        sum(Decimal(a.headers["x-cache-saved-cost-usd"]) for a in saved)
        == (stats["cost_saved_usd"])
    )
    assert sum(int(a.headers["x-cache-saved-tokens"]) for a in saved) == 12370


@asynccontextmanager
async def replicas(redis_url: str, n: int) -> AsyncIterator[list[Running]]:
    namespace = f"t{uuid.uuid4().hex[:12]}"
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                running(
                    make_settings(
                        cache_backend="redis", redis_url=redis_url, cache_namespace=namespace
                    )
                )
            )
            for _ in range(n)
        ]


@pytest.mark.redis
async def test_two_instances_sharing_redis_report_the_same_totals(
    upstream: respx.MockRouter, redis_url: str
) -> None:
    release = provider(upstream)
    async with replicas(redis_url, 2) as (one, two):
        await known_mix([one, two], release)
        # Reading flushes the reader's own pending increments first; read both, then again.
        await two.http.get("/v1/cache/stats")
        first = stats_doc(await one.http.get("/v1/cache/stats"))
        second = stats_doc(await two.http.get("/v1/cache/stats"))
    assert first == second
    assert without_since(first) == EXPECTED_TOTAL


@pytest.mark.redis
async def test_shutdown_flushes_pending_counts(upstream: respx.MockRouter, redis_url: str) -> None:
    release = provider(upstream)
    release.set()
    async with replicas(redis_url, 1) as (one,):
        namespace = one.gateway.settings.cache_namespace
        one.gateway.accounting.flush_interval = 3600  # only the shutdown flush can write
        await one.http.post("/v1/chat/completions", json=chat("a"))
        await one.http.post("/v1/chat/completions", json=chat("a"))
    async with running(
        make_settings(cache_backend="redis", redis_url=redis_url, cache_namespace=namespace)
    ) as later:
        stats = stats_doc(await later.http.get("/v1/cache/stats"))
    assert (stats["hits"], stats["misses"], stats["cost_saved_usd"]) == (1, 1, Decimal("0.000387"))


async def test_stats_need_the_admin_key_when_set(upstream: respx.MockRouter) -> None:
    async with running(make_settings(admin_api_key="admin-secret")) as gw:
        missing = await gw.http.get("/v1/cache/stats")
        ok = await gw.http.get("/v1/cache/stats", headers={"Authorization": "Bearer admin-secret"})
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "invalid_api_key"
    assert ok.status_code == 200


@pytest.mark.parametrize("query", ["series=day", "series=minute&points=0", "series=hour&points=x"])
async def test_bad_series_query_is_400(upstream: respx.MockRouter, query: str) -> None:
    async with running(make_settings()) as gw:
        answer = await gw.http.get(f"/v1/cache/stats?{query}")
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] in ("series", "points")


async def test_series_has_the_requested_buckets_with_the_same_counters(
    upstream: respx.MockRouter,
) -> None:
    release = provider(upstream)
    async with running(make_settings()) as gw:
        await known_mix([gw], release)
        minute = stats_doc(await gw.http.get("/v1/cache/stats?series=minute&points=5"))
        hour = stats_doc(await gw.http.get("/v1/cache/stats?series=hour"))
    points = minute["series"]["points"]
    assert (minute["series"]["interval"], minute["series"]["seconds"]) == ("minute", 60)
    assert len(points) == 5
    assert [p["t"] % 60 for p in points] == [0] * 5
    assert [b["t"] - a["t"] for a, b in itertools.pairwise(points)] == [60] * 4
    assert sum(p["hits"] for p in points) == 6
    assert sum(Decimal(p["cost_saved_usd"]) for p in points) == Decimal("0.003113")
    assert len(hour["series"]["points"]) == 720
    assert sum(p["tokens_saved"]["total"] for p in hour["series"]["points"]) == 12370
    assert without_since({k: v for k, v in minute.items() if k != "series"}) == EXPECTED_TOTAL


async def test_models_outside_the_table_count_under_other(upstream: respx.MockRouter) -> None:
    """On an open table a client may send any model name; the stats must not grow a
    `by_model` entry per invented name, so those answers add up under `other`."""
    provider(upstream)
    async with running(make_settings()) as gw:
        for name in ("my-own-model", "another-one", "my-own-model"):
            body = {"model": name, "messages": [{"role": "user", "content": "x"}]}
            assert (await gw.http.post("/v1/chat/completions", json=body)).status_code == 200
        await gw.http.post("/v1/chat/completions", json=chat("a"))
        stats = stats_doc(await gw.http.get("/v1/cache/stats"))
    assert sorted(stats["by_model"]) == [MINI, "other"]
    other = stats["by_model"]["other"]
    assert (other["misses"], other["hits"]) == (2, 1)
    assert other["tokens_saved"] == {"prompt": 1200, "completion": 345, "total": 1545}


async def test_a_stats_backend_that_hangs_does_not_stop_the_flushes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from genai_api.savings import accounting as accounting_module
    from genai_api.savings.accounting import Accounting, CacheStatus
    from genai_api.savings.backends import MemoryStats

    class Hanging(MemoryStats):
        hang = True

        async def apply(self, batch: Any, now: float) -> None:
            if self.hang:
                await asyncio.Event().wait()  # a Redis that never answers
            await super().apply(batch, now)

    monkeypatch.setattr(accounting_module, "FLUSH_TIMEOUT", 0.05)
    backend = Hanging()
    counts = Accounting(backend)
    counts.record("m", CacheStatus.HIT)
    assert await asyncio.wait_for(counts.flush(), 5) is False  # given up on, kept
    backend.hang = False
    assert await counts.flush() is True
    assert (await counts.snapshot())["hits"] == 1
