"""Test plumbing for the Responses API: request bodies, provider answers and streams (from
the fake upstream's independent generator, `bench.fake_responses`, and hand-written ones
for refusals and failures), respx routes, and reading a gateway stream event by event."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx
import orjson
import respx

from bench import fake_responses
from tests.conftest import Running

REQUEST: dict[str, Any] = {"model": "gpt-4o-mini", "input": "Say hello"}
TOOLS = [
    {
        "type": "function",
        "name": "search",
        "description": "Search the docs.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
    }
]
TOOL_CALL = {**REQUEST, "tools": TOOLS, "tool_choice": "required"}
REASONING = {**REQUEST, "model": "o4-mini", "reasoning": {"effort": "low", "summary": "auto"}}


def events_of(request: dict[str, Any], obfuscate: bool = True) -> list[dict[str, Any]]:
    """The fake upstream's stream for `request`."""
    options = {"stream_options": {"include_obfuscation": obfuscate}}
    return list(fake_responses.events({**request, **options}))


def refusal_events() -> list[dict[str, Any]]:
    """A stream whose message refuses, in three refusal deltas, ending completed."""
    done = fake_responses.response(REQUEST)
    message = done["output"][0]
    refusal = {"type": "refusal", "refusal": "I can't help with that."}
    done["output"][0] = {**message, "content": [refusal]}
    start = {**done, "status": "in_progress", "output": [], "usage": None}
    at = {"item_id": message["id"], "output_index": 0, "content_index": 0}
    added = {**message, "status": "in_progress", "content": []}
    stream: list[dict[str, Any]] = [
        {"type": "response.created", "response": start},
        {"type": "response.in_progress", "response": start},
        {"type": "response.output_item.added", "output_index": 0, "item": added},
        {"type": "response.content_part.added", **at, "part": {**refusal, "refusal": ""}},
        {"type": "response.refusal.delta", **at, "delta": "I can't"},
        {"type": "response.refusal.delta", **at, "delta": " help with"},
        {"type": "response.refusal.delta", **at, "delta": " that."},
        {"type": "response.refusal.done", **at, "refusal": refusal["refusal"]},
        {"type": "response.content_part.done", **at, "part": refusal},
        {"type": "response.output_item.done", "output_index": 0, "item": done["output"][0]},
        {"type": "response.completed", "response": done},
    ]
    return [{**e, "sequence_number": n} for n, e in enumerate(stream)]


def ending(kind: str) -> list[dict[str, Any]]:
    """A text stream that ends with `kind` instead of `response.completed` (`cut`: with
    nothing at all after its last delta)."""
    stream = events_of(REQUEST)
    last_delta = max(i for i, e in enumerate(stream) if e["type"].endswith(".delta"))
    head = stream[: last_delta + 1]
    done = copy.deepcopy(stream[-1]["response"])
    n = len(head)
    if kind == "response.failed":
        done.update(status="failed", error={"code": "server_error", "message": "Boom upstream."})
        head.append({"type": kind, "sequence_number": n, "response": done})
    elif kind == "response.incomplete":
        done.update(status="incomplete", incomplete_details={"reason": "max_output_tokens"})
        head.append({"type": kind, "sequence_number": n, "response": done})
    elif kind == "error":
        head.append(
            {
                "type": "error",
                "sequence_number": n,
                "code": "rate_limit_exceeded",
                "message": "Slow down.",
                "param": None,
            }
        )
    return head


def sse(events: Iterable[dict[str, Any]]) -> bytes:
    """The provider's SSE bytes: `event:` and `data:` lines, no `[DONE]`."""
    return b"".join(fake_responses.sse(e) for e in events)


def stream_route(upstream: respx.MockRouter, events: list[dict[str, Any]]) -> respx.Route:
    """The provider answering streamed requests with `events`, whole ones with the response
    the last event carries."""

    def answer(request: httpx.Request) -> httpx.Response:
        if orjson.loads(request.content).get("stream"):
            headers = {"content-type": "text/event-stream"}
            return httpx.Response(200, headers=headers, content=sse(events))
        return httpx.Response(200, json=events[-1]["response"])

    return upstream.post("/responses").mock(side_effect=answer)


def whole_route(upstream: respx.MockRouter, response: dict[str, Any]) -> respx.Route:
    return upstream.post("/responses").mock(return_value=httpx.Response(200, json=response))


class HeldEvents:
    """A provider stream of typed events the test writes to (`send`), open until `end`."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed = asyncio.Event()

    def send(self, *events: dict[str, Any]) -> None:
        self._queue.put_nowait(sse(events))

    def end(self) -> None:
        self._queue.put_nowait(None)

    async def _body(self) -> AsyncIterator[bytes]:
        try:
            while (piece := await self._queue.get()) is not None:
                yield piece
        finally:
            self.closed.set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "text/event-stream"}
        return httpx.Response(200, headers=headers, content=self._body())


def parse(raw: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    """A gateway stream's events: (the `event:` line's name, the `data:` JSON) each."""
    parsed = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        name, data = None, None
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data = orjson.loads(line[len("data: ") :])
        assert data is not None, block
        parsed.append((name, data))
    return parsed


async def raw_stream(
    gw: Running, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[httpx.Headers, bytes]:
    async with gw.http.stream(
        "POST", "/v1/responses", json={**body, "stream": True}, headers=headers
    ) as response:
        assert response.status_code == 200, await response.aread()
        return response.headers, await response.aread()
