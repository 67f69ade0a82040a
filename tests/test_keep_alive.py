"""The served protocol's keep-alive timeout behaves as uvicorn's, with one timer a connection.

Each test runs against uvicorn's own protocol too: what is asserted is uvicorn's behaviour.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import time
from collections.abc import AsyncIterator

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from genai_api.http import bounded_protocol
from genai_api.http.bounded_protocol import BoundedHttpToolsProtocol
from tests.conftest import wait_until
from tests.redis_server import free_port

IDLE = 0.5  # the keep-alive timeout of these servers, in seconds


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers `ok`; `/slow` takes 1.5 timeouts to."""
    if scope["type"] != "http":
        return
    await receive()
    if scope["path"] == "/slow":
        await asyncio.sleep(IDLE * 1.5)
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(params=["uvicorn", "served", "served, uvicorn not checked"])
async def port(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[int]:
    protocol = HttpToolsProtocol if request.param == "uvicorn" else BoundedHttpToolsProtocol
    if request.param == "served, uvicorn not checked":
        monkeypatch.setattr(bounded_protocol, "_CHECKED", False)  # uvicorn's own timer
    number = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=number,
        http=protocol,
        lifespan="off",
        log_config=None,
        timeout_keep_alive=IDLE,  # type: ignore[arg-type]  # uvicorn passes it to call_later
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started)
    yield number
    server.should_exit = True
    await task


async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str = "/") -> None:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200")
    assert await asyncio.wait_for(reader.readexactly(2), 5) == b"ok"


async def closed_after(reader: asyncio.StreamReader) -> float:
    """Seconds until the server closes the connection."""
    start = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    return time.monotonic() - start


async def test_an_idle_connection_is_closed_after_the_timeout(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await ask(reader, writer)
    await ask(reader, writer)
    waited = await closed_after(reader)
    writer.close()
    assert IDLE * 0.9 <= waited < IDLE + 2


async def test_a_connection_in_use_stays_open(port: int) -> None:
    """Requests a fifth of the timeout apart, for three timeouts: the timer armed after the
    first answer fires meanwhile and must not close a connection that was not idle that long."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.monotonic()
    while time.monotonic() - start < IDLE * 3:
        await ask(reader, writer)
        await asyncio.sleep(IDLE / 5)
    waited = await closed_after(reader)
    writer.close()
    assert waited >= IDLE * 0.9 - IDLE / 5


async def test_a_request_longer_than_the_timeout_is_answered(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await ask(reader, writer)  # arms the timer
    await ask(reader, writer, "/slow")  # under way when it fires
    waited = await closed_after(reader)  # then idle: closed a timeout after its answer
    writer.close()
    assert IDLE * 0.9 <= waited < IDLE + 2


def test_uvicorn_code_is_the_code_the_keep_alive_timer_was_checked_against() -> None:
    """`BoundedHttpToolsProtocol.on_response_complete` is uvicorn's but for its timer, and
    its `_unset_keepalive_if_required` means "not idle": a change in uvicorn's code there, or
    a new caller, means re-checking genai_api/http/bounded_protocol.py (then this test)."""
    source = inspect.getsource(HttpToolsProtocol.on_response_complete)
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == "64e254f28e389e76"
    callers = {
        name
        for name, function in vars(HttpToolsProtocol).items()
        if inspect.isfunction(function)
        and "_unset_keepalive_if_required" in function.__code__.co_names
    }
    assert callers == {"data_received", "on_response_complete", "connection_lost"}
