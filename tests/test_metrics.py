"""`GET /metrics`: Prometheus text that parses, bounded labels, and sums across workers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
import respx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import (
    CHAT,
    chat_response,
    completion_response,
    make_settings,
    running,
    stats_doc,
)
from tests.live_server import live_server
from tests.redis_server import RedisServer

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample by (name, sorted labels); parsing fails loudly on malformed text."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def ok(payload: dict[str, object]) -> httpx.Response:
    return httpx.Response(200, json=payload)


async def test_requests_are_counted_by_endpoint_model_and_cache_result(
    upstream: respx.MockRouter,
) -> None:
    upstream.post("/chat/completions").mock(return_value=ok(chat_response()))
    upstream.post("/completions").mock(return_value=ok(completion_response()))
    async with running(make_settings()) as gw:
        for _ in range(3):
            await gw.http.post("/v1/chat/completions", json=CHAT)
        await gw.http.post("/chat/completions", json=CHAT, headers={"Cache-Control": "no-store"})
        await gw.http.post(
            "/v1/completions", json={"model": "gpt-3.5-turbo-instruct", "prompt": "x"}
        )
        await gw.http.post("/v1/chat/completions", json={**CHAT, "model": "my-own-model"})
        await gw.http.post("/v1/chat/completions", content=b"{not json")
        answer = await gw.http.get("/metrics")
    assert answer.headers["content-type"].startswith("text/plain")
    samples = parse(answer.text)
    chat = {"endpoint": "chat.completions", "model": "gpt-4o-mini", "status": "200"}
    assert value(samples, "genai_requests_total", cache="miss", **chat) == 1
    assert value(samples, "genai_requests_total", cache="hit", **chat) == 2
    assert value(samples, "genai_requests_total", cache="bypass", **chat) == 1
    assert (
        value(
            samples,
            "genai_requests_total",
            endpoint="completions",
            model="gpt-3.5-turbo-instruct",
            cache="miss",
            status="200",
        )
        == 1
    )
    # A model outside the table is "other": clients cannot mint new series.
    assert (
        value(
            samples,
            "genai_requests_total",
            endpoint="chat.completions",
            model="other",
            cache="miss",
            status="200",
        )
        == 1
    )
    assert (
        value(
            samples,
            "genai_requests_total",
            endpoint="chat.completions",
            model="other",
            cache="none",
            status="400",
        )
        == 1
    )
    assert not any("my-own-model" in str(key) for key in samples)


async def test_tokens_and_cost_saved_and_spent_match_the_stats(upstream: respx.MockRouter) -> None:
    upstream.post("/chat/completions").mock(return_value=ok(chat_response(prompt=12, completion=5)))
    async with running(make_settings()) as gw:
        for _ in range(3):
            await gw.http.post("/v1/chat/completions", json=CHAT)
        samples = parse((await gw.http.get("/metrics")).text)
        stats = stats_doc(await gw.http.get("/v1/cache/stats"))
    mini = {"model": "gpt-4o-mini"}
    assert value(samples, "genai_cache_tokens_saved_total", kind="prompt", **mini) == 24
    assert value(samples, "genai_cache_tokens_saved_total", kind="completion", **mini) == 10
    assert value(samples, "genai_provider_tokens_total", kind="prompt", **mini) == 12
    assert value(samples, "genai_cache_cost_saved_usd_total", **mini) == pytest.approx(
        float(stats["cost_saved_usd"])
    )
    assert value(samples, "genai_provider_cost_usd_total", **mini) == pytest.approx(0.0000048)


async def test_tokens_reach_the_shared_registry_with_the_stats_flush(
    upstream: respx.MockRouter,
) -> None:
    """With several workers a scrape is answered by one of them; the others' token sums must
    reach prometheus-client without a scrape of their own (the periodic flush)."""
    from prometheus_client import generate_latest

    upstream.post("/chat/completions").mock(return_value=ok(chat_response(prompt=12, completion=5)))
    async with running(make_settings()) as gw:
        await gw.http.post("/v1/chat/completions", json=CHAT)
        await gw.http.post("/v1/chat/completions", json=CHAT)
        registry = gw.gateway.metrics.registry
        assert registry is not None
        mini = {"model": "gpt-4o-mini"}
        saved = 0.0
        for _ in range(40):  # the stats flush runs every half second
            samples = parse(generate_latest(registry).decode())  # not through render()
            saved = value(samples, "genai_cache_tokens_saved_total", kind="prompt", **mini)
            if saved:
                break
            await asyncio.sleep(0.05)
    assert saved == 12


async def test_provider_latency_and_calls_in_flight(upstream: respx.MockRouter) -> None:
    release = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return ok(chat_response())

    upstream.post("/chat/completions").mock(side_effect=slow)
    async with running(make_settings()) as gw:
        flight = asyncio.create_task(gw.http.post("/v1/chat/completions", json=CHAT))
        await asyncio.sleep(0.05)
        during = parse((await gw.http.get("/metrics")).text)
        release.set()
        await flight
        after = parse((await gw.http.get("/metrics")).text)
    assert value(during, "genai_provider_in_flight", upstream="default") == 1
    assert value(after, "genai_provider_in_flight", upstream="default") == 0
    call = {
        "endpoint": "chat.completions",
        "model": "gpt-4o-mini",
        "upstream": "default",
        "outcome": "ok",
    }
    assert value(after, "genai_provider_request_duration_seconds_count", **call) == 1
    assert value(after, "genai_provider_request_duration_seconds_bucket", le="+Inf", **call) == 1


@pytest.mark.redis
async def test_cache_backend_errors_are_counted(
    upstream: respx.MockRouter, redis_server: RedisServer
) -> None:
    upstream.post("/chat/completions").mock(return_value=ok(chat_response()))
    settings = make_settings(cache_backend="redis", redis_url=redis_server.url)
    async with running(settings) as gw:
        redis_server.stop()
        answer = await gw.http.post("/v1/chat/completions", json=CHAT)
        samples = parse((await gw.http.get("/metrics")).text)
        redis_server.start()
    assert answer.headers["x-cache"] == "BYPASS"
    assert value(samples, "genai_cache_backend_errors_total", component="cache") >= 1


async def test_metrics_can_require_the_admin_key(upstream: respx.MockRouter) -> None:
    settings = make_settings(admin_api_key="admin-secret", metrics_require_admin=True)
    async with running(settings) as gw:
        missing = await gw.http.get("/metrics")
        ok_ = await gw.http.get("/metrics", headers={"Authorization": "Bearer admin-secret"})
    assert missing.status_code == 401
    assert ok_.status_code == 200
    assert "genai_requests_total" in ok_.text


async def test_metrics_are_open_by_default_even_with_an_admin_key(
    upstream: respx.MockRouter,
) -> None:
    async with running(make_settings(admin_api_key="admin-secret")) as gw:
        assert (await gw.http.get("/metrics")).status_code == 200


@pytest.mark.slow
def test_several_workers_report_one_sum_and_clean_up(tmp_path: Path) -> None:
    env = {"TMPDIR": str(tmp_path)}
    with live_server(tmp_path, env, workers=2) as url:
        (shared,) = tmp_path.glob("genai-api-metrics-*")
        sent = 0
        with httpx.Client(base_url=url, timeout=10) as client:
            # Fresh connections until both workers have answered some (each writes its own
            # counter file); the kernel decides which worker accepts a connection, and on a
            # loaded machine the second worker may still be starting: bound by time, not count.
            deadline = time.monotonic() + 60
            while len(list(shared.glob("counter_*.db"))) < 2 and time.monotonic() < deadline:
                client.post("/v1/chat/completions", json=CHAT, headers={"Connection": "close"})
                sent += 1
            writers = len(list(shared.glob("counter_*.db")))
            scrapes = [
                parse(client.get("/metrics", headers={"Connection": "close"}).text)
                for _ in range(6)
            ]
    assert writers == 2
    totals = [
        sum(v for (name, _), v in s.items() if name == "genai_requests_total") for s in scrapes
    ]
    assert totals == [sent] * 6  # whichever worker answers the scrape, it reports every worker's
    assert not shared.exists()
