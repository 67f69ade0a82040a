"""An answer's head and body leave in one write; a stream's head does not wait for its body."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from genai_api.http.bounded_protocol import BoundedHttpToolsProtocol
from genai_api.http.one_write import OneWriteTransport
from tests.conftest import wait_until
from tests.redis_server import free_port


class Recorder:
    """A transport that records what reaches it, one entry per system call it would make."""

    def __init__(self) -> None:
        self.calls: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.calls.append(bytes(data))

    def writelines(self, lines: list[bytes]) -> None:
        self.calls.append(b"".join(lines))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def _wrapped() -> tuple[OneWriteTransport, Recorder]:
    recorder = Recorder()
    return OneWriteTransport(recorder, asyncio.get_running_loop()), recorder  # type: ignore[arg-type]


async def test_writes_in_one_pass_of_the_loop_leave_together() -> None:
    transport, recorder = _wrapped()
    transport.write(b"head ")
    transport.write(bytearray(b"body"))
    assert recorder.calls == []
    await asyncio.sleep(0)
    assert recorder.calls == [b"head body"]


async def test_a_buffer_is_copied_when_held() -> None:
    transport, recorder = _wrapped()
    buffer = bytearray(b"first")
    transport.write(buffer)
    buffer[:] = b"reuse"
    transport.flush()
    assert recorder.calls == [b"first"]


async def test_close_sends_what_is_held_first() -> None:
    transport, recorder = _wrapped()
    transport.write(b"last words")
    transport.close()
    assert recorder.calls == [b"last words"] and recorder.closed


async def test_nothing_is_written_to_a_closing_transport() -> None:
    transport, recorder = _wrapped()
    transport.write(b"too late")
    recorder.closed = True
    await asyncio.sleep(0)
    assert recorder.calls == []


async def test_closing_is_the_transports() -> None:
    transport, recorder = _wrapped()
    assert not transport.is_closing()
    recorder.closed = True
    assert transport.is_closing()


class Counted(BoundedHttpToolsProtocol):
    """The served protocol, with the socket's transport counting its writes."""

    writes: ClassVar[list[bytes]] = []

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        class Counting:
            def write(self, data: bytes) -> None:
                Counted.writes.append(bytes(data))
                transport.write(data)

            def writelines(self, lines: list[bytes]) -> None:
                Counted.writes.append(b"".join(lines))
                transport.writelines(lines)

            def __getattr__(self, name: str) -> Any:
                return getattr(transport, name)

        super().connection_made(Counting())  # type: ignore[arg-type]


release = asyncio.Event()


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """`/whole`: an answer in two messages; `/stream`: its head, then a chunk once released."""
    if scope["type"] != "http":
        return
    await receive()
    if scope["path"] == "/whole":
        headers = [(b"content-length", b"5")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"whole"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await release.wait()
    await send({"type": "http.response.body", "body": b"chunk"})


@pytest.fixture
async def port() -> AsyncIterator[int]:
    number = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=number, http=Counted, lifespan="off", log_config=None
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started)
    yield number
    server.should_exit = True
    release.set()
    await task


async def test_an_answer_leaves_in_one_write(port: int) -> None:
    Counted.writes.clear()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /whole HTTP/1.1\r\nHost: t\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert await asyncio.wait_for(reader.readexactly(5), 5) == b"whole"
    writer.close()
    assert head.startswith(b"HTTP/1.1 200")
    assert len(Counted.writes) == 1 and Counted.writes[0].endswith(b"\r\n\r\nwhole")


async def test_a_stream_head_leaves_before_its_body(port: int) -> None:
    release.clear()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)  # the body is not sent yet
    assert b"transfer-encoding: chunked" in head
    release.set()
    assert await asyncio.wait_for(reader.readuntil(b"chunk"), 5)
    writer.close()
