"""Answers relayed from the upstream: its status, its allowed headers, its body as it arrives.

`Relayed` sends the body chunk by chunk the moment each arrives (a file download never sits
whole in memory, an SSE stream reaches the client event by event) and closes the upstream
answer however the relay ends: finished, the client gone (Starlette stops the stream), or
failed. An upstream that breaks off mid-body is not hidden: the relay raises, the server
closes the connection, and the client sees a truncated body rather than a short one that
looks whole.

`claimed_events` is the same relay for an SSE stream whose events may carry new objects (a
streamed `POST /v1/responses` or `/v1/threads/runs`): each block of whole events is read for
ids and recorded *before* it is sent on, so a client can never use an id it was streamed
before the gateway knows whose it is.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import httpx
import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from genai_api.errors import GatewayError

log = logging.getLogger("genai_api.passthrough")

OnEvents = Callable[[list[Any]], Awaitable[None]]


class UpstreamCut(Exception):
    """The upstream broke off while its answer was being relayed."""


class Relayed(StreamingResponse):
    def __init__(
        self,
        upstream: httpx.Response,
        headers: Sequence[tuple[bytes, bytes]],
        chunks: AsyncIterator[bytes] | None = None,
    ) -> None:
        super().__init__(chunks if chunks is not None else raw_chunks(upstream))
        self.status_code = upstream.status_code
        self.raw_headers = list(headers)
        self._upstream = upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._upstream.aclose()


async def raw_chunks(upstream: httpx.Response) -> AsyncIterator[bytes]:
    """The upstream's body bytes as they arrive, undecoded (its `Content-Encoding` and
    `Content-Length` go along)."""
    try:
        async for chunk in upstream.aiter_raw():
            yield chunk
    except httpx.HTTPError as exc:
        log.warning("the upstream broke off its answer to %s: %r", upstream.request.url.path, exc)
        raise UpstreamCut(str(exc)) from exc


async def claimed_events(upstream: httpx.Response, on_events: OnEvents) -> AsyncIterator[bytes]:
    """An SSE body relayed block by block, each block's event data handed to `on_events`
    (parsed JSON objects) before the block goes on; a cut stream ends with an error event in
    OpenAI's shape, as the cached routes' streams do."""
    buffer = b""
    try:
        async for piece in upstream.aiter_bytes():
            buffer += piece
            end = _last_event_end(buffer)
            if end:
                block, buffer = buffer[:end], buffer[end:]
                await on_events(_event_data(block))
                yield block
        if buffer:
            await on_events(_event_data(buffer))
            yield buffer
    except httpx.HTTPError as exc:
        log.warning("the upstream broke off its stream for %s: %r", upstream.request.url.path, exc)
        yield _error_event(GatewayError("The upstream stream was cut.", code="upstream_cut"))
    except GatewayError as exc:  # the events' objects could not be recorded: not sent on
        yield _error_event(exc)


def _error_event(error: GatewayError) -> bytes:
    return b"event: error\ndata: " + orjson.dumps(error.envelope()) + b"\n\n"


def _last_event_end(buffer: bytes) -> int:
    """Where the last whole event of `buffer` ends (0: none yet). Events end with a blank
    line, written `\\n\\n` or `\\r\\n\\r\\n`."""
    lf, crlf = buffer.rfind(b"\n\n"), buffer.rfind(b"\r\n\r\n")
    return max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)


def _event_data(block: bytes) -> list[Any]:
    """The JSON of each event's `data` in `block` (data that is not JSON is skipped)."""
    parsed: list[Any] = []
    for event in block.replace(b"\r\n", b"\n").split(b"\n\n"):
        lines = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
        if not lines:
            continue
        try:
            parsed.append(orjson.loads(b"\n".join(lines)))
        except orjson.JSONDecodeError:
            continue
    return parsed
