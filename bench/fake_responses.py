"""The fake upstream's Responses API: whole responses and their typed event streams, shaped
as OpenAI's (written here on its own, not with the gateway's code, so tests compare the
gateway against an independent stream).

What a request gets, deterministically from its body:
- `reasoning: {"summary": ...}` → a reasoning item first, with a two-part summary;
- function `tools` with `tool_choice: "required"` (or naming a function) → a function call
  of the first (or named) function, its arguments JSON streamed in small pieces;
- otherwise an assistant message of one output text.
Streams put an `obfuscation` field on delta events unless
`stream_options.include_obfuscation` is false, as OpenAI does. Stored responses (`store`
not false) answer `GET/DELETE /v1/responses/{id}` and `GET .../input_items`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import orjson


def digest(request: dict[str, Any]) -> str:
    same = {k: v for k, v in request.items() if k not in ("stream", "stream_options")}
    return hashlib.sha256(orjson.dumps(same, option=orjson.OPT_SORT_KEYS)).hexdigest()


def response(request: dict[str, Any]) -> dict[str, Any]:
    """The completed response to `request`."""
    tag = digest(request)
    output: list[dict[str, Any]] = []
    reasoning = request.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("summary"):
        output.append(
            {
                "id": f"rs_fake{tag[:40]}",
                "type": "reasoning",
                "summary": [
                    {"type": "summary_text", "text": f"**Thinking {tag[:4]}** about it."},
                    {"type": "summary_text", "text": "Then deciding."},
                ],
            }
        )
    function = _called(request)
    if function is not None:
        output.append(
            {
                "id": f"fc_fake{tag[:40]}",
                "type": "function_call",
                "status": "completed",
                "arguments": orjson.dumps({"query": tag[:8], "limit": 3}).decode(),
                "call_id": f"call_{tag[:24]}",
                "name": function,
            }
        )
    else:
        text = f"Fake response {tag[:8]} from the benchmark upstream."
        output.append(
            {
                "id": f"msg_fake{tag[:40]}",
                "type": "message",
                "status": "completed",
                "content": [
                    {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
                ],
                "role": "assistant",
            }
        )
    reasoning_tokens = 12 if output[0]["type"] == "reasoning" else 0
    return {
        "id": f"resp_fake{tag[:40]}",
        "object": "response",
        "created_at": 1_700_000_000,
        "status": "completed",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": request.get("model", "fake"),
        "output": output,
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": request.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None, **(reasoning or {})},
        "store": request.get("store", True),
        "temperature": request.get("temperature", 1.0),
        "text": request.get("text") or {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools") or [],
        "top_p": request.get("top_p", 1.0),
        "truncation": request.get("truncation", "disabled"),
        "usage": {
            "input_tokens": 21,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 11 + reasoning_tokens,
            "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
            "total_tokens": 32 + reasoning_tokens,
        },
        "user": request.get("user"),
        "metadata": request.get("metadata") or {},
    }


def _called(request: dict[str, Any]) -> str | None:
    """The function the answer calls, if the request makes it call one."""
    names = [
        t["name"]
        for t in request.get("tools") or ()
        if isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("name"), str)
    ]
    choice = request.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        return str(choice.get("name"))
    return names[0] if names and choice == "required" else None


def events(request: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The stream of `response(request)`, event by event, `sequence_number`s from 0."""
    done = response(request)
    options = request.get("stream_options") or {}
    obfuscate = options.get("include_obfuscation", True) is not False
    sequence = iter(range(1_000_000))

    def event(kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "sequence_number": next(sequence), **fields}

    def delta(kind: str, text: str, **fields: Any) -> dict[str, Any]:
        extra = {"obfuscation": "x" * (16 - len(text) % 16)} if obfuscate else {}
        return event(kind, **fields, delta=text, **extra)

    start = {**done, "status": "in_progress", "output": [], "usage": None}
    yield event("response.created", response=start)
    yield event("response.in_progress", response=start)
    for index, item in enumerate(done["output"]):
        at = {"item_id": item["id"], "output_index": index}
        if item["type"] == "reasoning":
            yield event(
                "response.output_item.added", output_index=index, item={**item, "summary": []}
            )
            for n, part in enumerate(item["summary"]):
                where = {**at, "summary_index": n}
                empty = {"type": "summary_text", "text": ""}
                yield event("response.reasoning_summary_part.added", **where, part=empty)
                for word in _words(part["text"]):
                    yield delta("response.reasoning_summary_text.delta", word, **where)
                yield event("response.reasoning_summary_text.done", **where, text=part["text"])
                yield event("response.reasoning_summary_part.done", **where, part=part)
        elif item["type"] == "function_call":
            added = {**item, "status": "in_progress", "arguments": ""}
            yield event("response.output_item.added", output_index=index, item=added)
            args = item["arguments"]
            for i in range(0, len(args), 7):
                yield delta("response.function_call_arguments.delta", args[i : i + 7], **at)
            yield event(
                "response.function_call_arguments.done", **at, name=item["name"], arguments=args
            )
        else:
            added = {**item, "status": "in_progress", "content": []}
            yield event("response.output_item.added", output_index=index, item=added)
            part = item["content"][0]
            where = {**at, "content_index": 0}
            empty = {**part, "text": ""}
            yield event("response.content_part.added", **where, part=empty)
            for word in _words(part["text"]):
                yield delta("response.output_text.delta", word, **where, logprobs=[])
            yield event("response.output_text.done", **where, text=part["text"], logprobs=[])
            yield event("response.content_part.done", **where, part=part)
        yield event("response.output_item.done", output_index=index, item=item)
    yield event("response.completed", response=done)


def _words(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def sse(event: dict[str, Any]) -> bytes:
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


class Stored:
    """Responses the fake stored (`store` not false), for the retrieve/delete/items routes."""

    def __init__(self) -> None:
        self.responses: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}

    def keep(self, request: dict[str, Any], answer: dict[str, Any]) -> None:
        if request.get("store", True) is False:
            return
        given = request.get("input")
        if isinstance(given, str):
            text = {"type": "input_text", "text": given}
            given = [{"type": "message", "role": "user", "content": [text]}]
        self.responses[answer["id"]] = (answer, list(given or []))

    def answer(self, method: str, rest: str) -> tuple[int, dict[str, Any]]:
        """`rest`: the path after `/v1/responses/` (an id, or an id and `input_items`)."""
        response_id, _, below = rest.partition("/")
        found = self.responses.get(response_id)
        if found is None or below not in ("", "input_items") or (below and method != "GET"):
            message = f"Response with id '{response_id}' not found."
            error = {"message": message, "type": "invalid_request_error", "param": None}
            return 404, {"error": {**error, "code": None}}
        answer, items = found
        if method == "DELETE":
            del self.responses[response_id]
            return 200, {"id": response_id, "object": "response", "deleted": True}
        if below:
            data = [{"id": f"msg_in{i}", **item} for i, item in enumerate(items)]
            first = data[0]["id"] if data else None
            last = data[-1]["id"] if data else None
            page = {"object": "list", "data": data, "first_id": first, "last_id": last}
            return 200, {**page, "has_more": False}
        return 200, answer
