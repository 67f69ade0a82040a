"""`provider_errors`: provider calls that failed (error status, timeout, unreachable, cut
stream), counted once per call by the provider wrapper, in the stats (totals, per model,
series), `/metrics` and `genai-api stats`; a call the gateway itself gave up is not one."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import httpx
import pytest
import respx
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from genai_api.commands.stats import show_stats
from tests.conftest import CHAT, Running, chat_response, make_settings, running, stats_doc
from tests.embeddings_provider import Provider
from tests.streaming_client import HELLO, STREAM, HeldStream, landed, sse, streaming


async def _stats(gw: Running) -> dict[str, Any]:
    return stats_doc(await gw.http.get("/v1/cache/stats?series=minute&points=2"))


async def _errors_metric(gw: Running) -> dict[tuple[str, str, str], float]:
    text = (await gw.http.get("/metrics")).text
    return {
        (s.labels["endpoint"], s.labels["model"], s.labels["reason"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "genai_provider_errors"
        for s in family.samples
        if s.name == "genai_provider_errors_total"
    }


class Slow:
    """An upstream that answers after `seconds`; counts the calls it got (respx counts a call
    only once its answer is made, and a call that timed out never made one)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        await asyncio.sleep(self.seconds)
        return httpx.Response(200, json=chat_response())


@pytest.mark.parametrize(
    ("mock", "status", "reason"),
    [
        ({"return_value": httpx.Response(500, json={"error": {"message": "boom"}})}, 500, "error"),
        ({"return_value": httpx.Response(429, json={"error": {"message": "slow"}})}, 429, "error"),
        ({"return_value": httpx.Response(200, content=b"not json")}, 502, "error"),
        ({"side_effect": httpx.ConnectError("refused")}, 502, "unreachable"),
        ({"side_effect": Slow(2)}, 504, "timeout"),
    ],
    ids=["500", "429", "bad-answer", "unreachable", "timeout"],
)
async def test_a_failed_call_is_one_provider_error_in_every_view(
    upstream: respx.MockRouter, mock: dict[str, Any], status: int, reason: str
) -> None:
    route = upstream.post("/chat/completions").mock(**mock)
    async with running(make_settings(upstream_timeout=0.3)) as gw:
        # Five identical requests at once share one call: one failure, not five.
        answers = await asyncio.gather(
            *(gw.http.post("/v1/chat/completions", json=CHAT) for _ in range(5))
        )
        stats = await _stats(gw)
        metric = await _errors_metric(gw)
        console = Console(record=True, width=200, file=io.StringIO())
        assert await show_stats("http://gw", None, client=gw.http, console=console) == 0
    assert [a.status_code for a in answers] == [status] * 5
    slow = mock.get("side_effect")
    assert (slow.calls if isinstance(slow, Slow) else route.call_count) == 1
    assert stats["provider_errors"] == stats["by_model"]["gpt-4o-mini"]["provider_errors"] == 1
    assert sum(p["provider_errors"] for p in stats["series"]["points"]) == 1
    assert (stats["hits"], stats["misses"], stats["coalesced"], stats["errors"]) == (0, 0, 0, 0)
    assert metric == {("chat.completions", "gpt-4o-mini", reason): 1.0}
    total = next(line for line in console.export_text().splitlines() if "total" in line)
    assert [cell.strip() for cell in total.split("│")[1:-1]][6] == "1"


async def test_a_stream_cut_short_is_a_provider_error(upstream: respx.MockRouter) -> None:
    upstream.post("/chat/completions").mock(
        side_effect=lambda request: httpx.Response(200, content=sse(*HELLO[:2], done=False))
    )
    async with streaming(make_settings()) as gw:
        async with gw.http.stream("POST", "/v1/chat/completions", json=STREAM) as response:
            await response.aread()
        await landed(gw)
        stats = await _stats(gw)
        metric = await _errors_metric(gw)
    assert stats["provider_errors"] == 1
    assert metric == {("chat.completions", "gpt-4o-mini", "cut"): 1.0}


async def test_a_failed_embeddings_call_is_counted_under_embeddings(
    upstream: respx.MockRouter,
) -> None:
    upstream.post("/embeddings").mock(return_value=httpx.Response(503, json={"error": {}}))
    body = {"model": "text-embedding-3-small", "input": ["a", "b"]}
    async with running(make_settings()) as gw:
        answer = await gw.http.post("/v1/embeddings", json=body)
        stats = await _stats(gw)
        metric = await _errors_metric(gw)
    assert answer.status_code == 503
    assert stats["by_model"]["text-embedding-3-small"]["provider_errors"] == 1
    assert metric == {("embeddings", "text-embedding-3-small", "error"): 1.0}


async def test_a_call_the_gateway_cancels_is_not_a_provider_error(
    upstream: respx.MockRouter,
) -> None:
    # STREAM_FINISH_ON_DISCONNECT=false: the only client leaves, the gateway stops the call.
    held = HeldStream()
    upstream.post("/chat/completions").mock(side_effect=held)
    async with streaming(make_settings(stream_finish_on_disconnect=False)) as gw:
        held.send(HELLO[0])
        async with gw.http.stream("POST", "/v1/chat/completions", json=STREAM) as response:
            async for _ in response.aiter_bytes():
                break
        await asyncio.wait_for(held.closed.wait(), 5)
        await landed(gw)
        stats = await _stats(gw)
        metric = await _errors_metric(gw)
    assert stats["provider_errors"] == 0
    assert metric == {}


async def test_successful_calls_count_no_provider_error(upstream: respx.MockRouter) -> None:
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    upstream.post("/embeddings").mock(side_effect=Provider())
    async with running(make_settings()) as gw:
        for _ in range(2):
            await gw.http.post("/v1/chat/completions", json=CHAT)
            await gw.http.post(
                "/v1/embeddings", json={"model": "text-embedding-3-small", "input": "x"}
            )
        stats = await _stats(gw)
    assert (stats["hits"], stats["misses"], stats["provider_errors"]) == (2, 2, 0)
