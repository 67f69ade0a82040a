"""The reference servers' two upstream calls, and the pass-through relaying with one."""

from __future__ import annotations

import httpx
import orjson
import pytest

from bench.passthrough_proxy import PassthroughProxy
from bench.upstream_calls import AiohttpCall, SdkCall
from tests.processes import Service, provider_calls
from tests.test_fake_upstream import proxy_lifespan

BODY = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})


@pytest.mark.parametrize("kind", [AiohttpCall, SdkCall])
async def test_each_call_answers_the_upstreams_completion(
    kind: type[AiohttpCall | SdkCall], live_upstream: Service
) -> None:
    call = kind(live_upstream.url)
    await call.start()
    try:
        status, payload = await call("/v1/chat/completions", BODY)
    finally:
        await call.stop()
    assert status == 200
    assert orjson.loads(payload)["object"] == "chat.completion"
    assert provider_calls(live_upstream) == 1


async def test_the_passthrough_relays_status_and_body(live_upstream: Service) -> None:
    proxy = PassthroughProxy(live_upstream.url)
    async with proxy_lifespan(proxy):
        transport = httpx.ASGITransport(app=proxy)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as http:
            answer = await http.post("/v1/chat/completions", content=BODY)
    assert answer.status_code == 200
    assert answer.json()["object"] == "chat.completion"
    assert provider_calls(live_upstream) == 1
