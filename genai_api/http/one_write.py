"""A transport wrapper that sends an answer's head and body in one system call.

uvicorn writes a response's status line and headers when the app sends
`http.response.start`, and its body when the app sends `http.response.body`: two `write`s to
the socket, two system calls per answer. On a cache hit that second call was the largest
single cost the server adds to a request (sampled under load: uvicorn's `send` spent most of
its time in those two writes). Here what is written during one pass of the event loop is
held and leaves together: at the end of the response (`flush`, called by the protocol when
uvicorn says the response is complete), or at the end of that pass (`call_soon`) for a
response still going, such as a stream whose head must not wait for its first chunk.

The client sees the same bytes in the same order, as early: nothing waits for the network or
for the app; only writes that happen back to back are joined (`writelines`: a `writev`, the
bytes are not copied).
"""

from __future__ import annotations

import asyncio
from typing import Any


class OneWriteTransport:
    """Wraps `transport`; everything but `write` (and what must flush first) is its own."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self.loop = loop
        self.held: list[bytes] | None = None
        self._pass_end: asyncio.Handle | None = None  # the flush at the end of this pass

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if type(data) is not bytes:
            data = bytes(data)  # a buffer the caller may reuse after this returns
        held = self.held
        if held is None:
            self.held = [data]
            self._pass_end = self.loop.call_soon(self.flush)
        else:
            held.append(data)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        """Send what is held, in one system call."""
        held = self.held
        if held is None:
            return
        self.held = None
        # Flushed before the pass ended (a whole answer): its callback would find nothing
        # to send. Cancelled, the loop drops it without calling back into Python.
        pass_end = self._pass_end
        if pass_end is not None:
            self._pass_end = None
            pass_end.cancel()
        if self.transport.is_closing():
            return  # the connection is gone: so is what it would have carried
        if len(held) == 1:
            self.transport.write(held[0])
        else:
            self.transport.writelines(held)

    def is_closing(self) -> bool:
        # Asked by uvicorn after every response: spelled out, it does not go through
        # `__getattr__` (a failed lookup first, then a Python call).
        return self.transport.is_closing()

    def get_write_buffer_size(self) -> int:
        held = sum(len(data) for data in self.held) if self.held else 0
        return held + self.transport.get_write_buffer_size()

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def abort(self) -> None:
        self.held = None
        self.transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)
