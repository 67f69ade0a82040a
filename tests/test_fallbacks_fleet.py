"""Fallbacks across the fleet (CONTRACT §7 with §4): two `genai-api serve` processes sharing
Redis; identical requests for a model whose upstream fails make one call to it and one to
its fallback, and every client gets the fallback's one answer."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.processes import fake_upstream, gateway, upstream_calls

pytestmark = pytest.mark.redis

FLEET_KEY = "fleet-Wq82hdK3mZp"  # not `sk-...`, which the log's redaction would mask
HI = {"model": "slow", "messages": [{"role": "user", "content": "Say hi"}]}


async def _fleet_wide(client: httpx.AsyncClient, urls: list[str]) -> None:
    for _ in range(300):
        states = [(await client.get(url + "/readyz")).json().get("coalescing") for url in urls]
        if all(state == "fleet" for state in states):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the gateways never coalesced fleet-wide")


@pytest.mark.parametrize("stream", [False, True])
async def test_waiters_in_another_process_fall_back_to_the_same_answer(
    tmp_path: Path, redis_url: str, stream: bool
) -> None:
    slow = fake_upstream(tmp_path, 600, fail=503)
    fallback = fake_upstream(tmp_path, 300)
    services = [slow, fallback]
    try:
        models = tmp_path / "models.toml"
        models.write_text(
            f'[models.slow]\nbase_url = "{slow.url}/v1"\nfallbacks = ["gpt-4o-mini"]\n'
        )
        env = {
            "CACHE_BACKEND": "redis",
            "REDIS_URL": redis_url,
            "CACHE_NAMESPACE": f"fb{stream:d}{tmp_path.name[-8:]}",
            "PROVIDER": "openai",
            "OPENAI_API_KEY": FLEET_KEY,
            "OPENAI_BASE_URL": fallback.url + "/v1",
            "MODELS_FILE": str(models),
            "LOG_LEVEL": "INFO",
        }
        gateways = [gateway(tmp_path, env) for _ in range(2)]
        services += gateways
        for service in gateways:
            service.wait_ready()
        body = {**HI, "stream": stream}
        async with httpx.AsyncClient(timeout=30) as client:
            await _fleet_wide(client, [g.url for g in gateways])
            answers = await asyncio.gather(
                *(client.post(g.url + "/v1/chat/completions", json=body) for g in gateways * 4)
            )
        failed, answered = upstream_calls(slow), upstream_calls(fallback)
        logs = "".join(g.output() for g in gateways)
    finally:
        for service in services:
            service.stop()
    assert {a.status_code for a in answers} == {200}
    assert {a.headers["x-upstream-model"] for a in answers} == {"gpt-4o-mini"}
    texts = {a.text if stream else a.json()["choices"][0]["message"]["content"] for a in answers}
    if stream:  # the same chunks, live or replayed, but for their per-request framing
        texts = {text.replace("\r\n", "\n") for text in texts}
    assert len(texts) == 1
    # One call to the failing upstream: the waiters in the other process were handed its
    # failure and fell back, instead of calling it again; one call to the fallback.
    assert failed["total"] == 1
    assert answered["models"] == {"gpt-4o-mini": 1}
    assert "trying fallback gpt-4o-mini" in logs and FLEET_KEY not in logs
    assert all(FLEET_KEY not in a.text for a in answers)
    statuses = Counter(a.headers["x-cache"] for a in answers)
    assert statuses["MISS"] == 1 and statuses["COALESCED"] + statuses["HIT"] == 7
