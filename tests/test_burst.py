"""A burst of identical misses in one process: one lookup, one flight, one count for the
requests that joined it."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx

from genai_api.apis import CHAT as CHAT_API
from genai_api.controls import parse_controls
from genai_api.errors import CacheUnavailable
from genai_api.pipeline.call import Call
from genai_api.pipeline.core import Pipeline
from tests.conftest import CHAT, chat_response, make_settings, running, stats_doc


def gated_upstream(upstream: respx.MockRouter) -> tuple[asyncio.Event, asyncio.Event]:
    """The provider answers once `release` is set; `started` is set by its first call."""
    release, started = asyncio.Event(), asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        started.set()
        await release.wait()
        return httpx.Response(200, json=chat_response(prompt=12, completion=5))

    upstream.post("/chat/completions").mock(side_effect=slow)
    return release, started


def spy_gets(pipeline: Pipeline, before: Callable[[], Awaitable[None]] | None = None) -> list[str]:
    """Record every `store.get` (the lookup's and the claim's); `before` runs first."""
    calls: list[str] = []
    get = pipeline.store.get

    async def spied(key: str) -> Any:
        calls.append(key)
        if before is not None:
            await before()
        return await get(key)

    pipeline.store.get = spied  # type: ignore[method-assign]
    return calls


def call_of(gw: Any) -> Call:
    pipeline: Pipeline = gw.gateway.pipeline
    model = gw.gateway.models.get(CHAT["model"])
    controls = parse_controls({}, None, max_ttl=3600)
    return pipeline.prepare(CHAT_API, dict(CHAT), model=model, tenant="t", controls=controls)


async def test_a_burst_of_identical_misses_reads_the_store_once(
    upstream: respx.MockRouter,
) -> None:
    release, _ = gated_upstream(upstream)
    release.set()
    async with running(make_settings()) as gw:
        gets = spy_gets(gw.gateway.pipeline, lambda: asyncio.sleep(0.05))  # lookups overlap
        answers = await asyncio.gather(
            *(gw.http.post("/v1/chat/completions", json=CHAT) for _ in range(10))
        )
    assert Counter(a.headers["x-cache"] for a in answers) == {"MISS": 1, "COALESCED": 9}
    assert len(gets) == 2  # the first request's lookup, then its flight's re-check


async def test_readers_read_for_themselves_when_the_first_reader_is_cancelled(
    upstream: respx.MockRouter,
) -> None:
    release, _ = gated_upstream(upstream)
    release.set()
    gate, asked = asyncio.Event(), asyncio.Event()

    async def held() -> None:
        asked.set()
        await gate.wait()

    async with running(make_settings()) as gw:
        pipeline: Pipeline = gw.gateway.pipeline
        gets = spy_gets(pipeline, held)
        first = asyncio.create_task(pipeline.run(call_of(gw)))
        await asyncio.wait_for(asked.wait(), 5)
        others = [asyncio.create_task(pipeline.run(call_of(gw))) for _ in range(3)]
        await asyncio.sleep(0.01)
        assert len(gets) == 1  # they wait on the first lookup
        first.cancel()
        await asyncio.sleep(0.01)
        gate.set()
        outcomes = await asyncio.gather(*others)
        assert first.cancelled()
    assert sorted(o.status.value for o in outcomes) == ["COALESCED", "COALESCED", "MISS"]
    assert len(gets) == 1 + 3 + 1  # cancelled lookup, each reader's own, the flight's re-check


async def test_a_failed_shared_lookup_bypasses_every_reader(upstream: respx.MockRouter) -> None:
    release, _ = gated_upstream(upstream)
    release.set()
    async with running(make_settings()) as gw:
        pipeline: Pipeline = gw.gateway.pipeline

        async def broken() -> None:
            await asyncio.sleep(0.05)
            raise CacheUnavailable("store down")

        gets = spy_gets(pipeline, broken)
        answers = await asyncio.gather(
            *(gw.http.post("/v1/chat/completions", json=CHAT) for _ in range(5))
        )
        stats = stats_doc(await gw.http.get("/v1/cache/stats"))
    assert [a.status_code for a in answers] == [200] * 5
    assert len(gets) == 2  # one shared lookup, one re-check: both failed
    assert upstream.routes[0].call_count == 1
    assert stats["errors"] == 5  # each reader saw the failure, as if it had read itself


async def test_coalesced_answers_are_counted_once_when_the_flight_lands(
    upstream: respx.MockRouter,
) -> None:
    release, started = gated_upstream(upstream)
    async with running(make_settings()) as gw:
        pipeline: Pipeline = gw.gateway.pipeline
        records: list[int] = []
        record = pipeline.accounting.record

        def counted(*args: Any, **kwargs: Any) -> None:
            records.append(kwargs.get("count", 1))
            record(*args, **kwargs)

        pipeline.accounting.record = counted  # type: ignore[method-assign]
        tasks = [
            asyncio.create_task(gw.http.post("/v1/chat/completions", json=CHAT)) for _ in range(8)
        ]
        await asyncio.wait_for(started.wait(), 10)
        await asyncio.sleep(0.05)
        release.set()
        answers = await asyncio.gather(*tasks)
        stats = stats_doc(await gw.http.get("/v1/cache/stats"))
    assert Counter(a.headers["x-cache"] for a in answers) == {"MISS": 1, "COALESCED": 7}
    assert sorted(records) == [1, 7]
    assert (stats["misses"], stats["coalesced"]) == (1, 7)
    assert stats["tokens_saved"] == {"prompt": 7 * 12, "completion": 7 * 5, "total": 7 * 17}
    saved = [
        Decimal(a.headers["x-cache-saved-cost-usd"])
        for a in answers
        if a.headers.get("x-cache-saved-cost-usd")
    ]
    assert len(saved) == 7 and sum(saved) == Decimal(stats["cost_saved_usd"]) > 0


async def test_a_request_that_leaves_before_the_flight_lands_is_not_counted(
    upstream: respx.MockRouter,
) -> None:
    release, started = gated_upstream(upstream)
    async with running(make_settings()) as gw:
        pipeline: Pipeline = gw.gateway.pipeline
        leader = asyncio.create_task(pipeline.run(call_of(gw)))
        await asyncio.wait_for(started.wait(), 10)
        followers = [asyncio.create_task(pipeline.run(call_of(gw))) for _ in range(3)]
        await asyncio.sleep(0.01)
        followers[0].cancel()
        with pytest.raises(asyncio.CancelledError):
            await followers[0]
        release.set()
        outcomes = [await leader, *await asyncio.gather(*followers[1:])]
        stats = stats_doc(await gw.http.get("/v1/cache/stats"))
    assert [o.status.value for o in outcomes] == ["MISS", "COALESCED", "COALESCED"]
    assert (stats["misses"], stats["coalesced"]) == (1, 2)
    assert not pipeline.answers.followers and not pipeline.reads.pending
