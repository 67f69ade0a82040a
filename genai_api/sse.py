"""Server-Sent Events both ways: reading a provider's stream, writing ours.

Only what the OpenAI streaming format uses: `data:` lines, events ended by a blank line,
`data: [DONE]` as the end marker. Comments (`: keep-alive`), `event:`, `id:` and `retry:`
lines are ignored. A split anywhere in the bytes (mid-line, mid-UTF-8) is fine.

    >>> encode({"a": 1})
    b'data: {"a":1}\\n\\n'
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

DONE_DATA = "[DONE]"
DONE = b"data: [DONE]\n\n"
MEDIA_TYPE = "text/event-stream"


def encode(payload: dict[str, Any]) -> bytes:
    """One SSE event carrying `payload` as compact JSON."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def data_events(raw: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """The `data` of each event in a byte stream, as text (multi-line data joined by \\n).

    An event the stream ends in the middle of is still yielded: whether it is whole is for
    the JSON parser (and the missing `[DONE]`) to tell.
    """
    buffer = b""
    data: list[bytes] = []
    async for piece in raw:
        buffer += piece
        if b"\n" not in piece:
            continue
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            event = _take_line(line.rstrip(b"\r"), data)
            if event is not None:
                yield event
    if buffer:
        _take_line(buffer.rstrip(b"\r"), data)
    if data:
        yield b"\n".join(data).decode("utf-8", errors="replace")


def _take_line(line: bytes, data: list[bytes]) -> str | None:
    """Feed one line; return the finished event's data when `line` ends an event."""
    if not line:
        if not data:
            return None
        event = b"\n".join(data).decode("utf-8", errors="replace")
        data.clear()
        return event
    if line.startswith(b"data:"):
        value = line[5:]
        data.append(value[1:] if value.startswith(b" ") else value)
    return None
