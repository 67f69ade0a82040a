"""uvicorn's httptools protocol with the bounds it lacks: a request's head size and read time.

`MAX_REQUEST_BYTES` bounds a body, but httptools keeps a request's line and headers in
memory for as long as they keep coming: a client can send one 200 MB header (seen: a
worker's RSS +250 MB) or trickle a request a byte at a time and hold its connection and
memory for ever. This protocol, what `genai-api serve` runs:

- answers 431 and closes the connection once the head of a request has passed
  `MAX_HEAD_BYTES` (64 KiB: nginx's default limit is 32 KiB, Node's 16 KiB);
- answers 408 and closes it when a request started arriving `READ_SECONDS` ago and has not
  all arrived (the slow-loris pattern), head or body; except that a body the app marked
  `LONG_BODY` (a pass-through upload, up to `MAX_UPLOAD_BYTES`) may take as long as it
  needs while it keeps coming: the bound is then `READ_SECONDS` without a byte, and none
  while the server itself has paused reading (the upstream is taking the body slowly);
- answers malformed HTTP with OpenAI's error envelope, not uvicorn's plain text.

It also sends each answer's head and body in one system call, not two
(`genai_api.http.one_write`), and starts a request and checks and builds its answer's head
for less than uvicorn (`genai_api.http.lean_request`, `genai_api.http.lean_cycle`).

uvicorn's keep-alive timeout (an idle connection is closed `timeout_keep_alive` after its
last answer) is kept with one timer per connection instead of one per request: uvicorn
cancels its timer on every chunk read and arms a new one after every answer, ~3.8k
instructions a request in uvloop. Here a chunk only marks the connection busy and an answer
notes when it ended; the timer, when it fires, closes a connection idle that long, or waits
out the rest (the timeout is uvicorn's, to the millisecond libuv's timers have). This copies
uvicorn's `on_response_complete`: on a uvicorn it was not checked against, uvicorn's own runs.

It costs the hot path two short calls per request (~0.5 µs): the timer is armed only for
a request that did not arrive in one piece. A chunk read while a head is still arriving
counts whole, except the one the head began in (how much of it was head is unknown:
httptools gives no offsets), so a head may pass the bound by one socket read.
"""

from __future__ import annotations

import asyncio
from typing import cast

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from genai_api.errors import InvalidRequest
from genai_api.http.lean_cycle import uvicorn_checked
from genai_api.http.lean_request import served_on_headers_complete
from genai_api.http.limits import LONG_BODY
from genai_api.http.one_write import OneWriteTransport

MAX_HEAD_BYTES = 64 * 1024
READ_SECONDS = 30.0
LINGER_SECONDS = 2.0

_CHECKED = uvicorn_checked()  # else uvicorn's own keep-alive timer

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large", 400: b"Bad Request"}


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    max_head_bytes = MAX_HEAD_BYTES
    read_seconds = READ_SECONDS

    # uvicorn gives each request a new `scope` when its first byte is parsed and sets its
    # "method" once the head is complete: so after a chunk is read, `scope is _done` means
    # nothing is half-received (the common case, one check), and a scope without "method"
    # is a head still arriving. Base methods are called directly: `super()` costs a little
    # on every request.
    _done: object = None  # the scope of the last request received whole
    _head_bytes = 0  # of the head still arriving, from the chunk after the one it began in
    _timer: asyncio.TimerHandle | None = None
    _refused = False  # answered 4xx: what still arrives is dropped until the connection closes
    _arrived = 0.0  # when the last chunk of a request still arriving came (the loop's clock)
    _idle_since: float | None = None  # when the last answer ended, if nothing came since

    # uvicorn's, for less, creating a `LeanCycle` (`genai_api.http.lean_request`)
    on_headers_complete = served_on_headers_complete()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        wrapped = cast(asyncio.Transport, OneWriteTransport(transport, self.loop))
        HttpToolsProtocol.connection_made(self, wrapped)

    def on_response_complete(self) -> None:
        # The answer leaves now, whole (the transport is a OneWriteTransport; not `cast`:
        # a Python call on every request).
        self.transport.flush()  # type: ignore[attr-defined]
        if not _CHECKED:
            HttpToolsProtocol.on_response_complete(self)
            return
        # uvicorn's on_response_complete but for its keep-alive timer (the module says why).
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._idle_since = None
        self.flow.resume_reading()
        if self.pipeline:  # a request that came meanwhile starts now
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self._keep_alive_due
            )

    def _unset_keepalive_if_required(self) -> None:
        # uvicorn calls this on every chunk read (and after each answer, and when the
        # connection is lost) to cancel its keep-alive timer: here, to say it is not idle.
        if _CHECKED:
            self._idle_since = None
        else:
            HttpToolsProtocol._unset_keepalive_if_required(self)

    def _keep_alive_due(self) -> None:
        self.timeout_keep_alive_task = None
        if self._idle_since is None:
            return  # a request is under way: its answer arms the timer again
        rest = self._idle_since + self.timeout_keep_alive - self.loop.time()
        if rest >= 0.001:  # libuv's timers count milliseconds
            self.timeout_keep_alive_task = self.loop.call_later(rest, self._keep_alive_due)
        else:
            self.timeout_keep_alive_handler()  # uvicorn's: closes the connection

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering: read and dropped, so the refusal is not reset away
        before = self.scope
        HttpToolsProtocol.data_received(self, data)
        scope = self.scope
        if scope is self._done or self._refused:  # all received, or malformed (answered)
            return
        if "method" not in scope:  # the head is not all here yet
            if scope is not before:
                self._head_bytes = 0  # it began in this chunk: how much of it is unknown
            else:
                self._head_bytes += len(data)
                if self._head_bytes > self.max_head_bytes:
                    self._refuse(431, "The request's line and headers are too large.")
                    return
        self._arrived = self.loop.time()
        if self._timer is None:
            self._timer = self.loop.call_later(self.read_seconds, self._read_timed_out)

    def on_message_complete(self) -> None:
        HttpToolsProtocol.on_message_complete(self)
        self._done = self.scope
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None
        HttpToolsProtocol.connection_lost(self, exc)

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, f"{msg} (malformed HTTP)")

    def _read_timed_out(self) -> None:
        self._timer = None
        if self.scope is self._done:
            return
        if self.scope.get(LONG_BODY):
            idle = self.loop.time() - self._arrived
            if idle < self.read_seconds or self.flow.read_paused:
                wait = max(self.read_seconds - idle, self.read_seconds / 10)
                self._timer = self.loop.call_later(wait, self._read_timed_out)
                return
            self._refuse(408, f"The request body stopped arriving for {self.read_seconds:g} s.")
            return
        self._refuse(408, f"The request did not arrive whole within {self.read_seconds:g} s.")

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` in OpenAI's envelope, unless this request's answer has begun (then
        there is nothing left to say), and close the connection.

        Closing a socket with unread bytes in it sends a reset, and a reset makes the
        client's kernel drop what it had not read yet: our answer, exactly when the client
        is still sending (a large head). So the answer is followed by a FIN and what still
        arrives is read and dropped for `LINGER_SECONDS` before the close (nginx's
        "lingering close")."""
        self.logger.warning("%s: refused with %d", message, status)
        if self.transport.is_closing() or self._refused:
            return
        self._refused = True
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            if cycle is not None:
                cycle.disconnected = True  # the app sends nothing more on this connection
            self.transport.write(_response(status, message))
        if self._timer is not None:
            self._timer.cancel()
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()


def _response(status: int, message: str) -> bytes:
    body = orjson.dumps(InvalidRequest(message).envelope())
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n%s" % (status, _REASONS[status], len(body), body)
    )
