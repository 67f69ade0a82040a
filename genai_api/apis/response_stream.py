"""Responses API streams: typed events ⇄ the whole response, so one entry answers both
kinds of request.

OpenAI streams a response as typed events, each `{"type", "sequence_number", ...}` sent as
`event: <type>` + `data: <json>`: `response.created` and `response.in_progress` (the
response with no output yet), then for each output item `response.output_item.added`, its
parts and deltas (`response.output_text.delta`, `response.function_call_arguments.delta`,
`response.reasoning_summary_text.delta`, `response.refusal.delta`, ...) and their `.done`
events, `response.output_item.done`, and last `response.completed`, which carries the
whole response. No `data: [DONE]` follows. A stream that ends otherwise
(`response.failed`, `response.incomplete`, an `error` event, or no terminal event at all)
has no answer to store.

`assemble(events)` is the `response.completed` event's response: what a non-streamed
request gets. `synthesize(response)` goes the other way for a response stored whole: the
events OpenAI would have streamed for it, in its order (each part's text in one delta,
unless `pieces` splits it, as the mock provider does).

    >>> [e["type"] for e in synthesize(response)][:3]  # doctest: +SKIP
    ['response.created', 'response.in_progress', 'response.output_item.added']
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from genai_api.errors import GatewayError, IncompleteStream, ProviderError

Event = dict[str, Any]
Pieces = Callable[[str], list[str]]

COMPLETED = "response.completed"
# Terminal events of a stream that produced no answer to store.
FAILED = frozenset({"response.failed", "response.incomplete", "error"})


def completed(event: Event) -> bool:
    """True for `response.completed`; raises `ProviderError` for an event that ends the
    stream without an answer (`response.failed`, `response.incomplete`, `error`)."""
    kind = event.get("type")
    if kind == COMPLETED:
        return True
    if kind in FAILED:
        raise failure(event)
    return False


def failure(event: Event) -> ProviderError:
    """The error a failed stream's terminal event stands for (status 502: the upstream's
    answer failed after it began)."""
    kind = event.get("type")
    if kind == "error":
        said = {k: event.get(k) for k in ("message", "code", "param")}
        said["message"] = said["message"] or "The upstream stream failed."
        return ProviderError("The upstream stream failed.", status_code=502, body=said)
    response = event.get("response")
    response = response if isinstance(response, dict) else {}
    if kind == "response.incomplete":
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        message = f"The response is incomplete ({reason or 'no reason given'})."
        body: dict[str, Any] = {"message": message, "code": "response_incomplete"}
        return ProviderError(message, status_code=502, body=body)
    error = response.get("error")
    body = dict(error) if isinstance(error, dict) else {}
    body.setdefault("message", "The upstream response failed.")
    body["code"] = body.get("code") or "response_failed"
    return ProviderError(str(body["message"]), status_code=502, body=body)


def assemble(events: list[Event]) -> dict[str, Any]:
    """The completed response the stream carried; `IncompleteStream` if it carried none."""
    for event in reversed(events):
        if event.get("type") == COMPLETED:
            response = event.get("response")
            if isinstance(response, dict):
                return response
            break
    raise IncompleteStream("The upstream stream ended without response.completed.")


def storable(response: dict[str, Any]) -> bool:
    """A whole response worth storing: completed (not failed, incomplete or still queued).
    A body without `status` (a lax OpenAI-compatible server) is taken as completed."""
    return bool(response.get("status", "completed") == "completed")


def sse(event: Event) -> bytes:
    """One event as OpenAI frames it: `event: <type>` then its `data:`."""
    kind = event.get("type")
    data = b"data: " + orjson.dumps(event) + b"\n\n"
    return b"event: " + kind.encode() + b"\n" + data if isinstance(kind, str) else data


def error_event(error: GatewayError, after: Event | None) -> Event:
    """The `error` event that ends a failed stream: OpenAI's shape (`type`, `code`,
    `message`, `param`, the next `sequence_number`) plus the error envelope's `error`
    object, on which the openai SDKs raise `APIError` rather than yield the event."""
    sequence = after.get("sequence_number") if after is not None else None
    body = error.envelope()["error"]
    return {
        "type": "error",
        "code": body["code"],
        "message": body["message"],
        "param": body["param"],
        "sequence_number": sequence + 1 if isinstance(sequence, int) else 0,
        "error": body,
    }


def without_obfuscation(event: Event) -> Event:
    """An event as a client that set `stream_options.include_obfuscation: false` gets it."""
    if "obfuscation" not in event:
        return event
    return {k: v for k, v in event.items() if k != "obfuscation"}


def same(event: Event) -> Event:
    return event


def whole(text: str) -> list[str]:
    return [text] if text else []


def synthesize(response: dict[str, Any], pieces: Pieces = whole) -> list[Event]:
    """The events OpenAI streams for `response` (see the module docstring)."""
    return list(_Events(response, pieces))


class _Events:
    """Builds one stream: numbers each event in order, as OpenAI's `sequence_number`s."""

    def __init__(self, response: dict[str, Any], pieces: Pieces) -> None:
        self.response = response
        self.pieces = pieces
        self.sequence = 0

    def __iter__(self) -> Iterator[Event]:
        started = {**self.response, "status": "in_progress", "output": [], "usage": None}
        for name in ("completed_at", "error", "incomplete_details"):
            if name in started:
                started[name] = None
        yield self.event("response.created", response=started)
        yield self.event("response.in_progress", response=started)
        for index, item in enumerate(self.response.get("output") or ()):
            if isinstance(item, dict):
                yield from self.item(index, item)
        # A response that did not complete ends as OpenAI would end its stream (a server that
        # answered a stream request whole may have sent one).
        status = self.response.get("status")
        yield self.event(_TERMINAL.get(str(status), COMPLETED), response=self.response)

    def event(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event

    def item(self, index: int, item: dict[str, Any]) -> Iterator[Event]:
        kind = item.get("type")
        item_id = item.get("id")
        added = copy.deepcopy(item)
        if "status" in added:
            added["status"] = "in_progress"
        if kind == "message":
            added["content"] = []
        elif kind == "function_call":
            added["arguments"] = ""
        elif kind == "custom_tool_call":
            added["input"] = ""
        elif kind == "reasoning":
            added["summary"] = []
            if "content" in added:
                added["content"] = []
            added.pop("encrypted_content", None)
        yield self.event("response.output_item.added", output_index=index, item=added)
        at = {"item_id": item_id, "output_index": index}
        if kind in ("message", "reasoning"):
            for position, part in enumerate(item.get("content") or ()):
                if isinstance(part, dict):
                    yield from self.part({**at, "content_index": position}, part)
        if kind == "reasoning":
            for position, part in enumerate(item.get("summary") or ()):
                if isinstance(part, dict):
                    yield from self.summary({**at, "summary_index": position}, part)
        elif kind == "function_call":
            arguments = str(item.get("arguments") or "")
            for delta in self.pieces(arguments):
                yield self.event("response.function_call_arguments.delta", **at, delta=delta)
            name = item.get("name")
            yield self.event(
                "response.function_call_arguments.done", **at, name=name, arguments=arguments
            )
        elif kind == "custom_tool_call":
            given = str(item.get("input") or "")
            for delta in self.pieces(given):
                yield self.event("response.custom_tool_call_input.delta", **at, delta=delta)
            yield self.event("response.custom_tool_call_input.done", **at, input=given)
        yield self.event("response.output_item.done", output_index=index, item=item)

    def part(self, at: dict[str, Any], part: dict[str, Any]) -> Iterator[Event]:
        """A message's or reasoning item's content part: added, its deltas, done."""
        kind = part.get("type")
        field, prefix = _PART_TEXT.get(str(kind), (None, ""))
        empty = copy.deepcopy(part)
        if field is not None:
            empty[field] = ""
        if kind == "output_text":
            empty["annotations"] = []
            if "logprobs" in empty:
                empty["logprobs"] = []
        yield self.event("response.content_part.added", **at, part=empty)
        if field is not None:
            text = str(part.get(field) or "")
            # Text deltas always carry `logprobs` (the part's go with the first).
            logprobs = (part.get("logprobs") or []) if kind == "output_text" else None
            extra: dict[str, Any] = {} if logprobs is None else {"logprobs": logprobs}
            for n, delta in enumerate(self.pieces(text)):
                more = extra if n == 0 or logprobs is None else {"logprobs": []}
                yield self.event(f"{prefix}.delta", **at, delta=delta, **more)
            for position, note in enumerate(part.get("annotations") or ()):
                yield self.event(
                    "response.output_text.annotation.added",
                    **at,
                    annotation_index=position,
                    annotation=note,
                )
            yield self.event(f"{prefix}.done", **at, **{field: text}, **extra)
        yield self.event("response.content_part.done", **at, part=part)

    def summary(self, at: dict[str, Any], part: dict[str, Any]) -> Iterator[Event]:
        """A reasoning summary part: added, its text deltas, done."""
        text = str(part.get("text") or "")
        yield self.event("response.reasoning_summary_part.added", **at, part={**part, "text": ""})
        for delta in self.pieces(text):
            yield self.event("response.reasoning_summary_text.delta", **at, delta=delta)
        yield self.event("response.reasoning_summary_text.done", **at, text=text)
        yield self.event("response.reasoning_summary_part.done", **at, part=part)


_TERMINAL = {"incomplete": "response.incomplete", "failed": "response.failed"}
# A content part's text field, and the prefix of its delta and done events.
_PART_TEXT: dict[str, tuple[str, str]] = {
    "output_text": ("text", "response.output_text"),
    "refusal": ("refusal", "response.refusal"),
    "reasoning_text": ("text", "response.reasoning_text"),
}
