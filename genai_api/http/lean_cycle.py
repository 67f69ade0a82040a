"""uvicorn's request/response cycle, with a response head that costs less to check and build.

For every header of every answer, uvicorn's `RequestResponseCycle.send` runs two regular
expression searches (one on the name, one on the value) and lowers the name: 14 searches for
a cache hit's 7 headers, the largest single cost the server adds to a hit (~22k of its ~500k
instructions, callgrind). `LeanCycle` checks the same things for less:

- a name is checked by uvicorn's own expression once, then remembered as valid with what
  uvicorn writes for it, `<name lowered>: ` (`_NAMES`: names are the app's own, a few
  dozen; bounded all the same, as an app could echo names a client chose);
- the values are checked together: joined by a tab (a byte every value may hold), in one
  pass over a 256-byte table made from uvicorn's expression (`_VALUE_TABLE`), where uvicorn
  runs one search per value.

What is checked is exactly what uvicorn checks; what is written is byte for byte what it
writes. The fast path only decides and builds locally: anything unusual (a name not valid
or not `bytes`, a value with a byte uvicorn refuses or not bytes-like, headers not a list or
tuple, an unknown status, a message that is not the head) gives the message to uvicorn's own
`send`, which then does, logs and raises exactly what it always did (header injection
included: a value with CR or LF raises uvicorn's `RuntimeError("Invalid HTTP header value.")`).
Once a head is accepted, the framing headers are applied in uvicorn's order with uvicorn's
code (`content-length`, `transfer-encoding`, `connection`). A body is uvicorn's code verbatim,
called directly rather than through uvicorn's `send` (a second coroutine per message: ~1.7k
instructions a request); back-pressure, a client gone and messages out of order are
uvicorn's `send` itself.

This copies uvicorn internals (`send`, its table and expressions): `genai-api serve` uses
`LeanCycle` (through `genai_api.http.lean_request`) only on the uvicorn versions it was
checked against (`CHECKED_UVICORN`, otherwise uvicorn's own cycle), and
tests/test_lean_cycle.py fails when uvicorn's code changes.
"""

from __future__ import annotations

from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    RequestResponseCycle,
)
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

# uvicorn versions (prefixes) whose code LeanCycle, lean_request and the served protocol's
# keep-alive timer were checked against (tests/test_lean_cycle.py, tests/test_keep_alive.py).
CHECKED_UVICORN = ("0.55.",)


def uvicorn_checked() -> bool:
    """Whether the uvicorn installed is one of those: otherwise its own code runs."""
    return uvicorn.__version__.startswith(CHECKED_UVICORN)


MAX_NAMES = 512  # valid header names remembered (each a few dozen bytes)
_NAMES: dict[bytes, bytes] = {}  # a name uvicorn's HEADER_RE accepts -> b"<it lowered>: "

# Each byte uvicorn's HEADER_VALUE_RE refuses maps to another byte, each other byte to itself:
# values are valid when translating them changes nothing. A tab, the joint, is allowed.
_JOINT = b"\t"
_VALUE_TABLE = bytes(
    (byte + 1) % 256 if HEADER_VALUE_RE.search(bytes([byte])) else byte for byte in range(256)
)

_CRLF = b"\r\n"
_CONTENT_LENGTH = b"content-length: "
_TRANSFER_ENCODING = b"transfer-encoding: "
_CONNECTION = b"connection: "
_FRAMING = frozenset((_CONTENT_LENGTH, _TRANSFER_ENCODING, _CONNECTION))


def _valid_name(name: Any) -> bytes | None:
    """`<name lowered>: `, if uvicorn accepts `name` and it can be remembered; else None."""
    if type(name) is not bytes or HEADER_RE.search(name):
        return None
    prefix = name.lower() + b": "
    if len(_NAMES) < MAX_NAMES:
        _NAMES[name] = prefix
    return prefix


class LeanCycle(RequestResponseCycle):
    """uvicorn's cycle; `send` builds a response head through `_head` when it can, and
    writes a body itself."""

    async def send(self, message: Any) -> None:
        if self.disconnected or self.flow.write_paused:
            await RequestResponseCycle.send(self, message)  # back-pressure, a gone client
        elif not self.response_started:
            head = _head(self.default_headers, message)
            if head is None:
                await RequestResponseCycle.send(self, message)  # uvicorn does, and raises, the rest
            else:
                self._send_head(*head)
        elif self.response_complete or message["type"] != "http.response.body":
            await RequestResponseCycle.send(self, message)  # uvicorn's errors
        else:
            self._send_body(message)

    def _send_head(
        self, status_code: int, content: list[bytes], framing: list[tuple[bytes, Any]]
    ) -> None:
        """uvicorn's `send` for a head whose names and values it accepts (`_head` says)."""
        self.response_started = True
        self.waiting_for_100_continue = False
        if self.access_log:
            self.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                get_client_addr(self.scope),
                self.scope["method"],
                get_path_with_query_string(self.scope),
                self.scope["http_version"],
                status_code,
            )
        has_connection_close = False
        for name, value in framing:
            if name == _CONTENT_LENGTH and self.chunked_encoding is None:
                self.expected_content_length = int(value.decode())
                self.chunked_encoding = False
            elif name == _TRANSFER_ENCODING and value.lower() == b"chunked":
                self.expected_content_length = 0
                self.chunked_encoding = True
            elif name == _CONNECTION:
                connection = [token.lower().strip() for token in value.split(b",")]
                if b"close" in connection:
                    self.keep_alive = False
                    has_connection_close = True
        if not self.keep_alive and not has_connection_close:
            content.append(b"connection: close\r\n")
        if (
            self.chunked_encoding is None
            and self.scope["method"] != "HEAD"
            and status_code not in (204, 304)
        ):
            self.chunked_encoding = True
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(_CRLF)
        self.transport.write(b"".join(content))

    def _send_body(self, message: Any) -> None:
        """uvicorn's `send` for an `http.response.body` message (its code, verbatim)."""
        body = message.get("body", b"")
        more_body = message.get("more_body", False)

        # Write response body
        if self.scope["method"] == "HEAD":
            self.expected_content_length = 0
        elif self.chunked_encoding:
            if body:
                content = [b"%x\r\n" % len(body), body, b"\r\n"]
            else:
                content = []
            if not more_body:
                content.append(b"0\r\n\r\n")
            self.transport.write(b"".join(content))
        else:
            num_bytes = len(body)
            if num_bytes > self.expected_content_length:
                raise RuntimeError("Response content longer than Content-Length")
            else:
                self.expected_content_length -= num_bytes
            self.transport.write(body)

        # Handle response completion
        if not more_body:
            if self.expected_content_length != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()


def _head(
    default_headers: list[tuple[bytes, bytes]], message: Any
) -> tuple[int, list[bytes], list[tuple[bytes, Any]]] | None:
    """The status, the head's lines so far and its framing headers (`<name lowered>: `,
    value), in order; or None when uvicorn's own `send` must take the message. No side effects: the
    message's headers are only read when they are a list or tuple (read twice, then)."""
    try:
        if message["type"] != "http.response.start":
            return None
        status_code = message["status"]
        headers = message.get("headers", [])
        if type(default_headers) is not list or (
            type(headers) is not list and type(headers) is not tuple
        ):
            return None  # an iterator, say: read once, by uvicorn
        content = [STATUS_LINE[status_code]]
        values = []
        framing = []
        names = _NAMES
        for part in (default_headers, headers):
            for name, value in part:
                # The type first: a memoryview equal to a name remembered would match it,
                # where uvicorn fails (it has no `lower`).
                prefix = names.get(name) if type(name) is bytes else None
                if prefix is None:
                    prefix = _valid_name(name)
                    if prefix is None:
                        return None
                if prefix in _FRAMING:
                    framing.append((prefix, value))
                content += (prefix, value, _CRLF)
                values.append(value)
        joined = _JOINT.join(values)
        if joined.translate(_VALUE_TABLE) != joined:
            return None  # a value uvicorn refuses: it says so, in its words
    except Exception:
        return None  # what uvicorn makes of it, uvicorn says
    return status_code, content, framing
