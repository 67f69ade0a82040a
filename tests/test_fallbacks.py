"""Fallbacks (CONTRACT §7): when a model's upstream fails, the answer is its fallback's in
every respect (body, `X-Upstream-Model`, key, entry, price, counters), and everyone waiting
for the failed call gets that same answer.

Live fake upstreams (`tests.upstreams`): `llama-3.1-8b` on "vLLM" falls back to
`gpt-4o-mini` on "OpenAI", `bge` on "TEI" to `text-embedding-3-small`."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import running
from tests.processes import fake_upstream, set_mode
from tests.redis_server import free_port
from tests.upstreams import (  # noqa: F401 - the fixtures
    LLAMA_WIRE,
    Fakes,
    calls,
    fakes_fixture,
    upstreams_fixture,
)

HI = [{"role": "user", "content": "Say hi"}]
ADMIN = {"Authorization": "Bearer client-key"}


def _only_failures(counters: dict[str, Any]) -> bool:
    """A model whose every call failed over: provider errors counted, no answer."""
    answered = sum(counters[k] for k in ("hits", "misses", "coalesced", "bypassed"))
    return counters["provider_errors"] >= 1 and answered == 0


async def _stats(http: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    by_model: dict[str, dict[str, Any]] = (await http.get("/v1/cache/stats")).json()["by_model"]
    return by_model


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_a_failing_upstream_falls_back_and_the_answer_is_the_fallbacks(
    upstreams: Fakes, tmp_path: Path, status: int
) -> None:
    set_mode(upstreams.vllm, fail=status)
    async with running(upstreams.settings(tmp_path)) as gw:
        fell = await gw.client.chat.completions.with_raw_response.create(
            model="llama-3.1-8b", messages=HI
        )
        direct = await gw.client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=HI
        )
        again = await gw.client.chat.completions.with_raw_response.create(
            model="llama-3.1-8b", messages=HI
        )
        stats = await _stats(gw.http)
        stored_for_llama = await gw.http.request(
            "DELETE", "/v1/cache", json={"model": "llama-3.1-8b"}
        )
    assert fell.headers["x-upstream-model"] == "gpt-4o-mini"
    assert fell.parse().model == "gpt-4o-mini"  # the body names the fallback
    # Stored under the key the same request for the fallback has: that one is now a HIT.
    assert fell.headers["x-cache-key"] == direct.headers["x-cache-key"]
    assert [r.headers["x-cache"] for r in (fell, direct, again)] == ["MISS", "HIT", "HIT"]
    assert direct.parse().choices[0].message.content == fell.parse().choices[0].message.content
    assert "x-upstream-model" not in direct.headers
    assert again.headers["x-upstream-model"] == "gpt-4o-mini"
    assert stored_for_llama.json() == {"deleted": 0}  # never under the failed model's key
    assert calls(upstreams.openai)["total"] == 1 and calls(upstreams.vllm)["total"] == 2
    # Priced and counted as the fallback; the failed model has its failed call, nothing else.
    assert set(stats) == {"gpt-4o-mini", "llama-3.1-8b"}
    assert (stats["gpt-4o-mini"]["misses"], stats["gpt-4o-mini"]["hits"]) == (1, 2)
    assert _only_failures(stats["llama-3.1-8b"])


async def test_the_model_is_called_again_once_its_upstream_is_back(
    upstreams: Fakes, tmp_path: Path
) -> None:
    set_mode(upstreams.vllm, fail=503)
    async with running(upstreams.settings(tmp_path)) as gw:
        fell = await gw.client.chat.completions.with_raw_response.create(
            model="llama-3.1-8b", messages=HI
        )
        set_mode(upstreams.vllm, fail=None)
        back = await gw.client.chat.completions.with_raw_response.create(
            model="llama-3.1-8b", messages=HI
        )
    assert fell.headers["x-upstream-model"] == "gpt-4o-mini"
    assert back.headers["x-cache"] == "MISS" and "x-upstream-model" not in back.headers
    assert back.parse().model == "llama-3.1-8b"
    assert calls(upstreams.vllm)["models"] == {LLAMA_WIRE: 2}


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_an_error_about_the_request_is_the_answer_with_no_fallback(
    upstreams: Fakes, tmp_path: Path, status: int
) -> None:
    set_mode(upstreams.vllm, fail=status)
    async with running(upstreams.settings(tmp_path)) as gw:
        with pytest.raises(openai.APIStatusError) as caught:
            await gw.client.chat.completions.create(model="llama-3.1-8b", messages=HI)
    assert caught.value.status_code == status
    assert calls(upstreams.openai)["total"] == 0


async def test_when_every_fallback_fails_the_last_ones_error_reaches_the_client(
    upstreams: Fakes, tmp_path: Path
) -> None:
    set_mode(upstreams.vllm, fail=503)
    set_mode(upstreams.openai, fail=429)
    async with running(upstreams.settings(tmp_path)) as gw:
        with pytest.raises(openai.RateLimitError) as caught:
            await gw.client.chat.completions.create(model="llama-3.1-8b", messages=HI)
    assert caught.value.body == {
        "message": "fake failure 429",
        "type": "fake_error",
        "param": None,
        "code": "fake_failure",
    }


async def test_an_unreachable_upstream_falls_back(upstreams: Fakes, tmp_path: Path) -> None:
    extra = f"""
[models.gone]
base_url = "http://127.0.0.1:{free_port()}/v1"
fallbacks = ["llama-3.1-8b"]
"""
    async with running(upstreams.settings(tmp_path, extra=extra)) as gw:
        answer = await gw.client.chat.completions.with_raw_response.create(
            model="gone", messages=HI
        )
    assert answer.headers["x-upstream-model"] == "llama-3.1-8b"
    assert answer.parse().model == "llama-3.1-8b"


async def test_fallbacks_are_tried_depth_first_and_each_model_once(
    upstreams: Fakes, tmp_path: Path
) -> None:
    # first (vLLM, failing) -> llama (vLLM, failing) -> gpt-4o-mini (OpenAI, answers);
    # gpt-4o-mini is not tried a second time as first's own second fallback.
    extra = f"""
[models.first]
base_url = "{upstreams.vllm.url}/v1"
api_key_env = "TEST_VLLM_API_KEY"
fallbacks = ["llama-3.1-8b", "gpt-4o-mini"]
"""
    set_mode(upstreams.vllm, fail=503)
    set_mode(upstreams.openai, fail=500)
    async with running(upstreams.settings(tmp_path, extra=extra)) as gw:
        assert gw.gateway.models.get("first").fallbacks == ("llama-3.1-8b",)
        with pytest.raises(openai.InternalServerError):
            await gw.client.chat.completions.create(model="first", messages=HI)
        set_mode(upstreams.openai, fail=None)
        answer = await gw.client.chat.completions.with_raw_response.create(
            model="first", messages=HI
        )
    assert answer.headers["x-upstream-model"] == "gpt-4o-mini"
    assert calls(upstreams.vllm)["models"] == {"first": 2, LLAMA_WIRE: 2}
    assert calls(upstreams.openai)["models"] == {"gpt-4o-mini": 2}


async def test_coalesced_waiters_of_the_failed_call_all_get_the_fallbacks_one_answer(
    upstreams: Fakes, tmp_path: Path
) -> None:
    slow = fake_upstream(tmp_path, 300, fail=503)
    extra = f"""
[models.slow]
base_url = "{slow.url}/v1"
fallbacks = ["gpt-4o-mini"]
"""
    try:
        async with running(upstreams.settings(tmp_path, extra=extra)) as gw:
            answers = await asyncio.gather(
                *(
                    gw.client.chat.completions.with_raw_response.create(model="slow", messages=HI)
                    for _ in range(10)
                )
            )
            stats = await _stats(gw.http)
        slow_calls = calls(slow)["total"]
    finally:
        slow.stop()
    assert slow_calls == 1  # one flight for the ten...
    assert calls(upstreams.openai)["total"] == 1  # ...and one for their fallback
    assert len({a.parse().choices[0].message.content for a in answers}) == 1
    assert {a.headers["x-upstream-model"] for a in answers} == {"gpt-4o-mini"}
    assert Counter(a.headers["x-cache"] for a in answers) == {"MISS": 1, "COALESCED": 9}
    assert (stats["gpt-4o-mini"]["misses"], stats["gpt-4o-mini"]["coalesced"]) == (1, 9)
    assert _only_failures(stats["slow"])  # its one failed call


async def test_a_stream_falls_back_before_its_first_byte(upstreams: Fakes, tmp_path: Path) -> None:
    set_mode(upstreams.vllm, fail=503)
    async with running(upstreams.settings(tmp_path)) as gw:
        response = await gw.client.chat.completions.with_raw_response.create(
            model="llama-3.1-8b", messages=HI, stream=True
        )
        chunks = [chunk async for chunk in response.parse()]
        direct = await gw.client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=HI
        )
    assert response.headers["x-upstream-model"] == "gpt-4o-mini"
    assert {c.model for c in chunks} == {"gpt-4o-mini"}
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == direct.parse().choices[0].message.content
    assert direct.headers["x-cache"] == "HIT"  # the stream was stored as the fallback's


async def test_a_stream_cut_after_its_first_byte_does_not_fall_back(
    upstreams: Fakes, tmp_path: Path
) -> None:
    set_mode(upstreams.vllm, cut=True)
    async with running(upstreams.settings(tmp_path)) as gw:
        stream = await gw.client.chat.completions.create(
            model="llama-3.1-8b", messages=HI, stream=True
        )
        got = []
        with pytest.raises(openai.APIError):
            async for chunk in stream:
                got.append(chunk)
    assert len(got) == 1 and got[0].model == "llama-3.1-8b"
    assert calls(upstreams.openai)["total"] == 0


async def test_embeddings_fall_back_and_are_stored_as_the_fallbacks(
    upstreams: Fakes, tmp_path: Path
) -> None:
    set_mode(upstreams.tei, fail=503)
    async with running(upstreams.settings(tmp_path)) as gw:
        fell = await gw.client.embeddings.with_raw_response.create(
            model="bge", input=["alpha", "beta"]
        )
        direct = await gw.client.embeddings.with_raw_response.create(
            model="text-embedding-3-small", input=["beta"]
        )
        stats = await _stats(gw.http)
    assert fell.headers["x-upstream-model"] == "text-embedding-3-small"
    assert fell.parse().model == "text-embedding-3-small"
    assert direct.headers["x-cache"] == "HIT"  # each input stored under the fallback's key
    assert direct.parse().data[0].embedding == fell.parse().data[1].embedding
    assert calls(upstreams.openai)["models"] == {"text-embedding-3-small": 1}
    assert set(stats) == {"text-embedding-3-small", "bge"}
    assert _only_failures(stats["bge"])


async def test_fallbacks_share_the_requests_time_budget(upstreams: Fakes, tmp_path: Path) -> None:
    slow = fake_upstream(tmp_path, 600, fail=503)
    extra = f"""
[models.slow]
base_url = "{slow.url}/v1"
fallbacks = ["llama-3.1-8b"]
"""
    set_mode(upstreams.vllm, hang=True)
    try:
        async with running(upstreams.settings(tmp_path, extra=extra, upstream_timeout=1.5)) as gw:
            start = time.perf_counter()
            with pytest.raises(openai.APIStatusError) as caught:
                await gw.client.chat.completions.create(model="slow", messages=HI)
            took = time.perf_counter() - start
    finally:
        slow.stop()
    assert caught.value.status_code == 504
    # 0.6 s on the failing model, then what was left of the 1.5 s for the hanging fallback
    # (not a whole UPSTREAM_TIMEOUT of its own), and none for llama's own fallback.
    assert 1.4 < took < 2.3, took
    assert calls(upstreams.openai)["total"] == 0


async def test_coalesced_streams_of_the_failed_call_all_follow_the_fallbacks_one_stream(
    upstreams: Fakes, tmp_path: Path
) -> None:
    slow = fake_upstream(tmp_path, 300, fail=503)
    extra = f'[models.slow]\nbase_url = "{slow.url}/v1"\nfallbacks = ["gpt-4o-mini"]\n'
    body = {"model": "slow", "messages": HI, "stream": True}
    try:
        async with running(upstreams.settings(tmp_path, extra=extra)) as gw:
            answers = await asyncio.gather(
                *(gw.http.post("/v1/chat/completions", json=body) for _ in range(6))
            )
        slow_calls = calls(slow)["total"]
    finally:
        slow.stop()
    assert slow_calls == 1 and calls(upstreams.openai)["total"] == 1
    assert len({a.text for a in answers}) == 1 and '"model":"gpt-4o-mini"' in answers[0].text
    assert {a.headers["x-upstream-model"] for a in answers} == {"gpt-4o-mini"}
    assert Counter(a.headers["x-cache"] for a in answers) == {"MISS": 1, "COALESCED": 5}
