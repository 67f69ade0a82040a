"""Responses API streams through the gateway with the openai SDK: typed events relayed
live, stored once `response.completed` arrives, replayed event by event, shared with
non-streamed requests both ways; failed and cut streams never stored and ending with an
error the SDK raises."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai
import orjson
import pytest
import respx

from bench import fake_responses
from genai_api.apis.response_stream import synthesize
from tests.endpoints import stored_keys
from tests.responses_client import (
    REASONING,
    REQUEST,
    TOOL_CALL,
    HeldEvents,
    ending,
    events_of,
    parse,
    raw_stream,
    refusal_events,
    sse,
    stream_route,
    whole_route,
)
from tests.streaming_client import landed, make_settings, streaming

SHAPES = {
    "text": (REQUEST, events_of(REQUEST)),
    "tool-call": (TOOL_CALL, events_of(TOOL_CALL)),
    "reasoning": (REASONING, events_of(REASONING)),
    "reasoning-tool-call": (
        {**TOOL_CALL, **REASONING},
        events_of({**TOOL_CALL, **REASONING}),
    ),
    "refusal": (REQUEST, refusal_events()),
}
each_shape = pytest.mark.parametrize("shape", list(SHAPES))


@each_shape
async def test_a_hit_replays_every_event_as_the_miss_relayed_it(
    upstream: respx.MockRouter, shape: str
) -> None:
    body, events = SHAPES[shape]
    route = stream_route(upstream, events)
    async with streaming(make_settings()) as gw:
        miss_headers, miss = await raw_stream(gw, body)
        hit_headers, hit = await raw_stream(gw, body)
    assert route.call_count == 1
    assert (miss_headers["x-cache"], hit_headers["x-cache"]) == ("MISS", "HIT")
    assert hit_headers["content-type"].startswith("text/event-stream")
    assert parse(miss) == [(e["type"], e) for e in events]  # relayed as the provider sent
    assert hit == miss  # the same events, bytes, boundaries and sequence numbers
    assert b"[DONE]" not in hit
    assert int(hit_headers["x-cache-saved-tokens"]) == sum(
        events[-1]["response"]["usage"][k] for k in ("input_tokens", "output_tokens")
    )


@each_shape
async def test_the_sdk_accumulates_the_same_final_response_from_a_hit(
    upstream: respx.MockRouter, shape: str
) -> None:
    body, events = SHAPES[shape]
    stream_route(upstream, events)
    async with streaming(make_settings()) as gw:
        finals, seen = [], []
        for _ in "ab":
            async with gw.client.responses.stream(**body) as stream:
                seen.append([e.type async for e in stream])
                finals.append(await stream.get_final_response())
    assert finals[0].model_dump() == finals[1].model_dump()
    assert finals[0].id == events[-1]["response"]["id"]
    assert seen[0] == seen[1]
    if shape == "tool-call":
        assert "response.function_call_arguments.delta" in seen[1]
        call = finals[1].output[0]
        assert call.type == "function_call" and orjson.loads(call.arguments)["limit"] == 3
    if shape.startswith("reasoning"):
        assert "response.reasoning_summary_text.delta" in seen[1]
    if shape == "refusal":
        assert seen[1].count("response.refusal.delta") == 3


@each_shape
async def test_a_streamed_miss_is_a_whole_hit_with_the_completed_response(
    upstream: respx.MockRouter, shape: str
) -> None:
    body, events = SHAPES[shape]
    route = stream_route(upstream, events)
    async with streaming(make_settings()) as gw:
        await raw_stream(gw, body)
        hit = await gw.client.responses.with_raw_response.create(**body)
    assert route.call_count == 1
    assert hit.headers["x-cache"] == "HIT"
    assert orjson.loads(hit.http_response.content) == events[-1]["response"]


def _plain(value: Any) -> Any:
    """A dumped `ParsedResponse` without the SDK's own parsing (`parsed`...)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not k.startswith("parsed")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _merged(events: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """Event types and, for deltas, the text they add up to: a stream's content, whatever
    its delta boundaries and sequence numbers."""
    out: list[tuple[str, Any]] = []
    for event in events:
        kind = event["type"]
        if kind.endswith(".delta") and out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + event["delta"])
        else:
            out.append((kind, event.get("delta")))
    return out


@pytest.mark.parametrize("shape", ["text", "tool-call", "reasoning", "reasoning-tool-call"])
async def test_a_whole_miss_is_a_well_formed_stream_hit(
    upstream: respx.MockRouter, shape: str
) -> None:
    """Synthesized from the stored response, the stream holds what the provider would have
    streamed (compared with the fake upstream's own stream), and the SDK accumulates the
    stored response from it."""
    body, events = SHAPES[shape]
    whole = events[-1]["response"]
    route = whole_route(upstream, whole)
    async with streaming(make_settings()) as gw:
        miss = await gw.client.responses.create(**body)
        headers, raw = await raw_stream(gw, body)
        async with gw.client.responses.stream(**body) as stream:
            final = await stream.get_final_response()
    assert route.call_count == 1
    assert headers["x-cache"] == "HIT"
    replayed = [data for _, data in parse(raw)]
    assert [e["sequence_number"] for e in replayed] == list(range(len(replayed)))
    assert _merged(replayed) == _merged(events)
    done_events = [
        (e["type"], e.get("item"), e.get("part")) for e in events if ".done" in e["type"]
    ]
    assert [
        (e["type"], e.get("item"), e.get("part")) for e in replayed if ".done" in e["type"]
    ] == (done_events)
    assert _plain(final.model_dump()) == miss.model_dump()


async def test_a_synthesized_stream_carries_refusals_annotations_and_logprobs() -> None:
    response = fake_responses.response(REQUEST)
    text = response["output"][0]["content"][0]
    text["annotations"] = [{"type": "url_citation", "url": "https://x.test", "title": "X",
                            "start_index": 0, "end_index": 4}]  # fmt: skip
    text["logprobs"] = [{"token": "Fake", "logprob": -0.5, "top_logprobs": []}]
    response["output"][0]["content"].append({"type": "refusal", "refusal": "No more."})
    events = synthesize(response)
    kinds = [e["type"] for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    delta = events[kinds.index("response.output_text.delta")]
    assert delta["logprobs"] == text["logprobs"] and delta["delta"] == text["text"]
    note = events[kinds.index("response.output_text.annotation.added")]
    assert note["annotation"] == text["annotations"][0] and note["annotation_index"] == 0
    refusal = events[kinds.index("response.refusal.delta")]
    assert (refusal["delta"], refusal["content_index"]) == ("No more.", 1)
    assert events[0]["response"]["output"] == [] and events[0]["response"]["usage"] is None
    assert events[-1] == {
        "type": "response.completed",
        "sequence_number": len(events) - 1,
        "response": response,
    }


async def test_a_miss_is_relayed_live_while_the_provider_is_still_streaming(
    upstream: respx.MockRouter,
) -> None:
    events = events_of(REQUEST)
    held = HeldEvents()
    upstream.post("/responses").mock(side_effect=held)
    async with streaming(make_settings()) as gw:
        held.send(*events[:3])
        raw = await gw.client.responses.with_raw_response.create(**REQUEST, stream=True)
        stream = raw.parse().__aiter__()
        first = [await asyncio.wait_for(stream.__anext__(), 5) for _ in range(3)]
        assert not held.closed.is_set()  # the provider has not finished: this was live
        held.send(*events[3:])
        held.end()
        rest = [e async for e in stream]
    assert raw.headers["x-cache"] == "MISS"
    assert [e.type for e in first] == [e["type"] for e in events[:3]]
    assert [e.sequence_number for e in first + rest] == [e["sequence_number"] for e in events]


async def test_coalesced_streams_follow_the_one_provider_stream_live(
    upstream: respx.MockRouter,
) -> None:
    events = events_of(REQUEST)
    held = HeldEvents()
    route = upstream.post("/responses").mock(side_effect=held)
    async with streaming(make_settings()) as gw:
        held.send(*events[:2])
        first = await gw.client.responses.with_raw_response.create(**REQUEST, stream=True)
        second = await gw.client.responses.with_raw_response.create(**REQUEST, stream=True)
        whole = asyncio.create_task(gw.client.responses.with_raw_response.create(**REQUEST))
        held.send(*events[2:])
        held.end()
        got = [[e.model_dump() async for e in r.parse()] for r in (first, second)]
        joined = await whole
    assert route.call_count == 1
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "COALESCED")
    assert joined.headers["x-cache"] == "COALESCED"
    assert got[0] == got[1] and len(got[0]) == len(events)
    assert joined.parse().id == events[-1]["response"]["id"]


@pytest.mark.parametrize("end", ["response.failed", "response.incomplete", "error", "cut"])
async def test_a_stream_that_does_not_complete_is_never_stored_and_the_sdk_raises(
    upstream: respx.MockRouter, end: str
) -> None:
    events = ending(end)
    route = stream_route(upstream, events)
    async with streaming(make_settings()) as gw:
        seen: list[str] = []
        with pytest.raises(openai.APIError) as raised:
            async with gw.client.responses.stream(**REQUEST) as stream:
                async for event in stream:
                    seen.append(event.type)
        await landed(gw)
        keys = stored_keys(gw)
        headers, raw = await raw_stream(gw, REQUEST)
    assert keys == []
    assert route.call_count == 2  # the second request was a miss too
    assert headers["x-cache"] == "MISS"
    assert seen == [e["type"] for e in events]  # relayed as they came, then the SDK raised
    last_name, last = parse(raw)[-1]
    assert last_name == "error" and last["type"] == "error"
    assert last["sequence_number"] == events[-1]["sequence_number"] + 1
    assert last["error"]["message"] == last["message"] == raised.value.message
    expected = {
        "response.failed": "Boom upstream.",
        "response.incomplete": "The response is incomplete (max_output_tokens).",
        "error": "Slow down.",
        "cut": "The upstream stream ended before it finished.",
    }[end]
    assert raised.value.message == expected


async def test_an_error_status_before_the_stream_is_a_plain_http_error(
    upstream: respx.MockRouter,
) -> None:
    error = {"error": {"message": "Too many requests", "type": "rate_limit", "code": None}}
    upstream.post("/responses").mock(
        return_value=httpx.Response(429, json=error, headers={"retry-after": "3"})
    )
    async with streaming(make_settings()) as gw:
        with pytest.raises(openai.RateLimitError) as raised:
            await gw.client.responses.create(**REQUEST, stream=True)
        keys = stored_keys(gw)
    assert raised.value.response.headers["retry-after"] == "3"
    assert keys == []


async def test_obfuscation_is_left_out_for_a_client_that_turned_it_off(
    upstream: respx.MockRouter,
) -> None:
    stream_route(upstream, events_of(REQUEST, obfuscate=True))
    off = {**REQUEST, "stream_options": {"include_obfuscation": False}}
    async with streaming(make_settings()) as gw:
        _, with_padding = await raw_stream(gw, REQUEST)
        headers, without = await raw_stream(gw, off)
    assert headers["x-cache"] == "HIT"
    assert b'"obfuscation"' in with_padding
    assert b'"obfuscation"' not in without
    assert len(parse(without)) == len(parse(with_padding))


async def test_a_provider_that_answers_whole_is_streamed_by_the_gateway(
    upstream: respx.MockRouter,
) -> None:
    whole_route(upstream, events_of(REQUEST)[-1]["response"])  # JSON even for stream: true
    async with streaming(make_settings()) as gw:
        async with gw.client.responses.stream(**REQUEST) as stream:
            final = await stream.get_final_response()
        again = await gw.client.responses.with_raw_response.create(**REQUEST)
    assert final.output_text.startswith("Fake response")
    assert again.headers["x-cache"] == "HIT"


async def test_a_done_marker_after_the_completed_event_is_harmless(
    upstream: respx.MockRouter,
) -> None:
    events = events_of(REQUEST)
    content = sse(events) + b"data: [DONE]\n\n"
    upstream.post("/responses").mock(
        return_value=httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=content
        )
    )
    async with streaming(make_settings()) as gw:
        _, miss = await raw_stream(gw, REQUEST)
        headers, hit = await raw_stream(gw, REQUEST)
    assert headers["x-cache"] == "HIT"
    assert hit == miss == sse(events)


@pytest.mark.parametrize(("end", "outcome"), [("completed", "ok"), ("response.failed", "error")])
async def test_the_provider_call_of_a_stream_is_timed_by_how_it_ended(
    upstream: respx.MockRouter, end: str, outcome: str
) -> None:
    """The gateway stops reading at `response.completed`: that is a successful call, not
    one its reader abandoned."""
    events = events_of(REQUEST) if end == "completed" else ending(end)
    stream_route(upstream, events)
    async with streaming(make_settings()) as gw:
        await gw.http.post("/v1/responses", json={**REQUEST, "stream": True})
        await landed(gw)
        metrics = (await gw.http.get("/metrics")).text
    counted = 'genai_provider_request_duration_seconds_count{endpoint="responses",'
    assert f'{counted}model="gpt-4o-mini",outcome="{outcome}",upstream="default"}} 1.0' in metrics


async def test_an_incomplete_answer_to_a_stream_request_ends_as_an_incomplete_stream(
    upstream: respx.MockRouter,
) -> None:
    """A server that answers `stream: true` whole with an incomplete response: the stream
    the gateway makes of it ends `response.incomplete`, then the error; nothing is stored."""
    response = {**events_of(REQUEST)[-1]["response"], "status": "incomplete"}
    response["incomplete_details"] = {"reason": "max_output_tokens"}
    route = whole_route(upstream, response)
    async with streaming(make_settings()) as gw:
        _, raw = await raw_stream(gw, REQUEST)
        keys = stored_keys(gw)
    names = [name for name, _ in parse(raw)]
    assert names[-2:] == ["response.incomplete", "error"]
    assert keys == [] and route.call_count == 1
