"""Several upstreams behind one endpoint (CONTRACT §7): each model goes to its own upstream
with its own key, under the name that upstream knows it by, and no key goes anywhere else.

Live fake upstreams (`tests.upstreams`), the openai SDK as the client."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from decimal import Decimal
from pathlib import Path

import pytest

from genai_api.logs import redact
from genai_api.warming.runner import warm_app
from tests.conftest import running, wait_until
from tests.processes import set_mode
from tests.test_metrics import parse, value
from tests.upstreams import (  # noqa: F401 - the fixtures
    BGE_WIRE,
    KEYS,
    LLAMA_WIRE,
    OPENAI_KEY,
    VLLM_KEY,
    VLLM_KEY_ENV,
    Fakes,
    calls,
    fakes_fixture,
    upstreams_fixture,
)

HI = [{"role": "user", "content": "Say hi"}]


async def test_each_model_goes_to_its_upstream_with_its_key_and_its_upstream_name(
    upstreams: Fakes, tmp_path: Path
) -> None:
    async with running(upstreams.settings(tmp_path)) as gw:
        mini = await gw.client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=HI
        )
        llama = await gw.client.chat.completions.with_raw_response.create(
            model="llama-3.1-8b", messages=HI
        )
        again = await gw.client.chat.completions.with_raw_response.create(
            model="llama-3.1-8b", messages=HI
        )
    openai, vllm = calls(upstreams.openai), calls(upstreams.vllm)
    assert openai["models"] == {"gpt-4o-mini": 1} and openai["bearers"] == {OPENAI_KEY: 1}
    assert vllm["models"] == {LLAMA_WIRE: 1} and vllm["bearers"] == {VLLM_KEY: 1}
    # The public name is what the client sees in the answer, and what the key is made of.
    assert llama.parse().model == "llama-3.1-8b" and mini.parse().model == "gpt-4o-mini"
    assert [r.headers["x-cache"] for r in (mini, llama, again)] == ["MISS", "MISS", "HIT"]
    assert again.parse().model == "llama-3.1-8b"
    assert "x-upstream-model" not in llama.headers


async def test_a_stream_is_routed_and_its_events_carry_the_public_name(
    upstreams: Fakes, tmp_path: Path
) -> None:
    async with running(upstreams.settings(tmp_path)) as gw:
        stream = await gw.client.chat.completions.create(
            model="llama-3.1-8b", messages=HI, stream=True
        )
        chunks = [chunk async for chunk in stream]
        replayed = await gw.client.chat.completions.create(
            model="llama-3.1-8b", messages=HI, stream=True
        )
        again = [chunk async for chunk in replayed]
    assert {c.model for c in chunks} == {c.model for c in again} == {"llama-3.1-8b"}
    assert calls(upstreams.vllm)["models"] == {LLAMA_WIRE: 1}
    assert calls(upstreams.openai)["total"] == 0


async def test_a_model_with_a_base_url_and_no_api_key_env_is_called_without_a_key(
    upstreams: Fakes, tmp_path: Path
) -> None:
    async with running(upstreams.settings(tmp_path)) as gw:
        answer = await gw.client.embeddings.with_raw_response.create(
            model="bge", input=["alpha", "beta"]
        )
    tei = calls(upstreams.tei)
    assert tei["models"] == {BGE_WIRE: 1}
    assert tei["bearers"] == {"": 1}  # no Authorization header at all
    assert answer.parse().model == "bge" and len(answer.parse().data) == 2
    assert calls(upstreams.openai)["total"] == calls(upstreams.vllm)["total"] == 0


async def test_completions_and_prompt_templates_are_routed_too(
    upstreams: Fakes, tmp_path: Path
) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "hi.toml").write_text(
        'name = "hi"\nversion = "1"\nmodel = "llama-3.1-8b"\n'
        '[[messages]]\nrole = "user"\ncontent = "Say hi to ${who}."\n'
    )
    settings = upstreams.settings(tmp_path, prompts_dir=prompts)
    async with running(settings) as gw:
        text = await gw.client.completions.create(model="llama-3.1-8b", prompt="Once")
        templated = await gw.http.post(
            "/v1/prompts/hi/completions", json={"variables": {"who": "Ada"}}
        )
    assert text.model == "llama-3.1-8b"
    assert templated.status_code == 200 and templated.json()["model"] == "llama-3.1-8b"
    vllm = calls(upstreams.vllm)
    assert vllm["models"] == {LLAMA_WIRE: 2} and vllm["bearers"] == {VLLM_KEY: 2}
    assert set(vllm["by_path"]) == {"/v1/completions", "/v1/chat/completions"}


async def test_no_key_reaches_a_log_line_an_answer_the_model_list_or_the_metrics(
    upstreams: Fakes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    set_mode(upstreams.vllm, fail=503)  # an error answer, and a fallback, are logged
    bodies: list[str] = []
    with caplog.at_level(logging.DEBUG):
        async with running(upstreams.settings(tmp_path)) as gw:
            for model in ("gpt-4o-mini", "llama-3.1-8b"):
                answer = await gw.http.post(
                    "/v1/chat/completions", json={"model": model, "messages": HI}
                )
                bodies.append(answer.text + str(answer.headers))
            set_mode(upstreams.openai, fail=500)
            failed = await gw.http.post(
                "/v1/chat/completions", json={"model": "llama-3.1-8b", "messages": HI * 2}
            )
            bodies.append(failed.text + str(failed.headers))
            for path in ("/v1/models", "/v1/models/llama-3.1-8b", "/metrics", "/v1/cache/stats"):
                bodies.append((await gw.http.get(path)).text)
    assert failed.status_code == 500  # the last upstream's error, as it answered
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
    assert "upstream of llama-3.1-8b failed (503" in logged
    assert f"key from {VLLM_KEY_ENV}" in logged  # the variable's name is said...
    for key in KEYS:  # ...never its value
        assert key not in logged
        assert all(key not in body for body in bodies)


async def test_a_hung_upstream_does_not_slow_requests_to_another(
    upstreams: Fakes, tmp_path: Path
) -> None:
    set_mode(upstreams.vllm, hang=True)
    settings = upstreams.settings(tmp_path, upstream_concurrency=2, upstream_timeout=30)
    async with running(settings) as gw:
        hung = [
            asyncio.create_task(
                gw.client.chat.completions.create(
                    model="llama-3.1-8b", messages=[{"role": "user", "content": f"hang {i}"}]
                )
            )
            for i in range(3)  # two fill vLLM's slots, the third queues for one
        ]
        await wait_until(lambda: calls(upstreams.vllm)["total"] == 2)
        took = []
        for i in range(20):
            start = time.perf_counter()
            answer = await gw.client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"fast {i}"}]
            )
            took.append(time.perf_counter() - start)
            assert answer.model == "gpt-4o-mini"
        assert not any(task.done() for task in hung)
        samples = parse((await gw.http.get("/metrics")).text)
        for task in hung:
            task.cancel()
        await asyncio.gather(*hung, return_exceptions=True)
    assert max(took) < 1.0, took  # each answered in milliseconds, none waited for a slot
    assert calls(upstreams.vllm)["total"] == 2  # the third never got one of its slots
    vllm = f"127.0.0.1:{upstreams.vllm.port}"
    assert value(samples, "genai_provider_in_flight", upstream=vllm) == 2
    assert value(samples, "genai_provider_in_flight", upstream="default") == 0


async def test_metrics_label_provider_calls_by_upstream(upstreams: Fakes, tmp_path: Path) -> None:
    set_mode(upstreams.tei, fail=502)
    async with running(upstreams.settings(tmp_path, extra="")) as gw:
        await gw.client.chat.completions.create(model="llama-3.1-8b", messages=HI)
        await gw.client.embeddings.create(model="bge", input="x")  # fails, falls back
        samples = parse((await gw.http.get("/metrics")).text)
    count = "genai_provider_request_duration_seconds_count"
    vllm, tei = (f"127.0.0.1:{s.port}" for s in (upstreams.vllm, upstreams.tei))
    chat = {"endpoint": "chat.completions", "model": "llama-3.1-8b", "upstream": vllm}
    assert value(samples, count, outcome="ok", **chat) == 1
    embeddings = {"endpoint": "embeddings", "model": "bge", "upstream": tei}
    assert value(samples, count, outcome="error", **embeddings) == 1
    fallback = {"endpoint": "embeddings", "model": "text-embedding-3-small", "upstream": "default"}
    assert value(samples, count, outcome="ok", **fallback) == 1
    fallbacks = "genai_provider_fallbacks_total"
    assert value(samples, fallbacks, model="bge", fallback="text-embedding-3-small") == 1


async def test_the_start_up_log_lists_each_upstream_once_without_credentials(
    upstreams: Fakes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    extra = f"""
[models.llama-guard]
base_url = "{upstreams.vllm.url}/v1/"
api_key_env = "{VLLM_KEY_ENV}"
"""
    with caplog.at_level(logging.INFO, logger="genai_api"):
        async with running(upstreams.settings(tmp_path, extra=extra)):
            pass
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("upstream ")]
    vllm, tei = (f"127.0.0.1:{s.port}" for s in (upstreams.vllm, upstreams.tei))
    assert lines == [
        f"upstream default: openai at {upstreams.openai.url}/v1 (key from OPENAI_API_KEY) "
        "for every other model",
        f"upstream {vllm}: openai at {upstreams.vllm.url}/v1 (key from {VLLM_KEY_ENV}) "
        "for llama-3.1-8b, llama-guard",  # one upstream: same URL, same key
        f"upstream {tei}: openai at {upstreams.tei.url}/v1 (no key) for bge",
    ]
    # As the log's redaction leaves them: nothing in them looks like a secret.
    assert [redact(line) for line in lines] == lines


async def test_warm_routes_each_line_to_its_models_upstream_and_prices_what_answered(
    upstreams: Fakes, tmp_path: Path
) -> None:
    set_mode(upstreams.tei, fail=503)  # bge falls back to text-embedding-3-small
    batch = tmp_path / "batch.jsonl"
    lines = [
        {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "llama-3.1-8b", "messages": HI}},
        {"custom_id": "b", "method": "POST", "url": "/v1/embeddings",
         "body": {"model": "bge", "input": ["a long text"]}},
    ]  # fmt: skip
    batch.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    async with running(upstreams.settings(tmp_path)) as gw:
        summary = await warm_app(gw.app, batch)
    assert (summary.misses, summary.errors) == (2, 0)
    assert calls(upstreams.vllm)["models"] == {LLAMA_WIRE: 1}
    assert calls(upstreams.openai)["models"] == {"text-embedding-3-small": 1}
    # llama: 20 + 9 tokens at 0.05/0.10 per 1M; the embeddings at text-embedding-3-small's
    # 0.02 per 1M (the model that answered), not bge's 0.01.
    llama = Decimal(20 * 5 + 9 * 10) / 100_000_000
    assert summary.cost_spent == llama + Decimal(summary.tokens_spent - 29) * 2 / 100_000_000


async def test_without_an_openai_key_only_the_default_upstream_is_the_mock(
    upstreams: Fakes, tmp_path: Path
) -> None:
    settings = upstreams.settings(tmp_path, provider=None, openai_api_key=None)
    async with running(settings) as gw:
        mock = await gw.client.chat.completions.create(model="gpt-4o-mini", messages=HI)
        llama = await gw.client.chat.completions.create(model="llama-3.1-8b", messages=HI)
    assert mock.system_fingerprint == "fp_mock"
    assert llama.model == "llama-3.1-8b" and llama.system_fingerprint is None
    assert calls(upstreams.vllm)["bearers"] == {VLLM_KEY: 1}
    assert calls(upstreams.openai)["total"] == 0
