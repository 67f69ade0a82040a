"""The Responses API against the live fake upstream (real HTTP both ways): the SDK's
streams and whole answers through the gateway, replays compared event by event with what
the provider sent, and fleet coalescing of streamed and whole requests across two live
`genai-api serve` processes on Redis."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import make_settings, running
from tests.processes import Service, provider_calls
from tests.responses_client import REASONING, REQUEST, TOOL_CALL, parse, raw_stream
from tests.test_fleet import Fleet, coalescing_fleet_wide, until

BODIES = {
    "text": REQUEST,
    "tool-call": TOOL_CALL,
    "reasoning-tool-call": {**TOOL_CALL, **REASONING},
}


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    started = Fleet(tmp_path)
    try:
        yield started
    finally:
        started.close()


async def _direct(upstream: Service, body: dict[str, Any]) -> bytes:
    """The provider's own stream for `body`, asked for straight."""
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(upstream.url + "/v1/responses", json={**body, "stream": True})
    return answer.content


@pytest.mark.parametrize("shape", list(BODIES))
async def test_streams_are_relayed_and_replayed_event_by_event(
    live_upstream: Service, shape: str
) -> None:
    body = BODIES[shape]
    settings = make_settings(openai_base_url=live_upstream.url + "/v1")
    async with running(settings) as gw:
        headers = {"Authorization": "Bearer client-key"}
        miss_headers, miss = await raw_stream(gw, body, headers)
        hit_headers, hit = await raw_stream(gw, body, headers)
        whole = await gw.client.responses.with_raw_response.create(**body)
    original = await _direct(live_upstream, body)
    assert (miss_headers["x-cache"], hit_headers["x-cache"]) == ("MISS", "HIT")
    assert whole.headers["x-cache"] == "HIT"
    assert parse(miss) == parse(original)  # event by event: names, data, sequence numbers
    assert hit == miss
    completed = parse(original)[-1][1]
    assert completed["type"] == "response.completed"
    assert orjson.loads(whole.http_response.content) == completed["response"]
    assert provider_calls(live_upstream) == 2  # the gateway's one call, and ours direct


async def test_sdk_calls_through_the_gateway_get_what_the_provider_answers(
    live_upstream: Service,
) -> None:
    settings = make_settings(openai_base_url=live_upstream.url + "/v1")
    body = {**TOOL_CALL, **REASONING}
    async with running(settings) as gw:
        whole = await gw.client.responses.create(**body)
        async with gw.client.responses.stream(**body) as stream:
            kinds = [event.type async for event in stream]
            final = await stream.get_final_response()
        other = await gw.client.responses.create(**{**REQUEST, "input": "Something else"})
        async with gw.client.responses.stream(**{**REQUEST, "input": "Fresh one"}) as stream:
            fresh = await stream.get_final_response()
    assert [item.type for item in whole.output] == ["reasoning", "function_call"]
    assert "response.function_call_arguments.delta" in kinds
    assert "response.reasoning_summary_text.delta" in kinds
    assert final.output[1].model_dump(exclude={"parsed_arguments"}) == (
        whole.output[1].model_dump()
    )
    assert other.output_text.startswith("Fake response ")
    assert fresh.output_text.startswith("Fake response ")
    assert provider_calls(live_upstream) == 3  # the stream of `body` was a hit


@pytest.mark.redis
async def test_fleet_coalescing_streamed_and_whole_requests_make_one_provider_call(
    fleet: Fleet, redis_url: str
) -> None:
    upstream = fleet.upstream(400)
    one, two = fleet.gateways(redis_url, upstream)
    body = {**REQUEST, "input": "fleet-wide question"}

    async def streamed(service: Service) -> tuple[str, list[Any]]:
        async with (
            httpx.AsyncClient(timeout=30) as client,
            client.stream(
                "POST", service.url + "/v1/responses", json={**body, "stream": True}
            ) as answer,
        ):
            assert answer.status_code == 200
            return answer.headers["x-cache"], parse(await answer.aread())

    async def whole(service: Service) -> tuple[str, Any]:
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.post(service.url + "/v1/responses", json=body)
        assert answer.status_code == 200, answer.text
        return answer.headers["x-cache"], answer.json()

    async with httpx.AsyncClient(timeout=30) as client:
        await until(lambda: coalescing_fleet_wide(client, [one, two]))
    results = await asyncio.gather(
        *(streamed(s) for s in [one, two] * 5), *(whole(s) for s in [one, two] * 5)
    )
    streams, wholes = results[:10], results[10:]
    assert provider_calls(upstream) == 1
    statuses = Counter(status for status, _ in results)
    assert statuses["MISS"] == 1 and sum(statuses.values()) == 20
    assert set(statuses) <= {"MISS", "COALESCED", "HIT"}
    events = [e for _, e in streams]
    assert all(e == events[0] for e in events)  # every stream the same events, in order
    assert events[0][-1][0] == "response.completed"
    assert all(answer == events[0][-1][1]["response"] for _, answer in wholes)
