"""The server protocol's bounds on a request's head and read time, over real sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from genai_api.http.bounded_protocol import BoundedHttpToolsProtocol
from genai_api.http.limits import LONG_BODY
from tests.conftest import wait_until
from tests.redis_server import free_port


class Tight(BoundedHttpToolsProtocol):
    max_head_bytes = 4096
    read_seconds = 0.5


async def echo_length(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers the size of the body it read; marks `/upload` `LONG_BODY`, as the body-limit
    middleware marks a pass-through upload."""
    if scope["path"] == "/upload":
        scope[LONG_BODY] = True
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(size).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def port() -> AsyncIterator[int]:
    number = free_port()
    config = uvicorn.Config(
        echo_length, host="127.0.0.1", port=number, http=Tight, lifespan="off", log_config=None
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started)
    yield number
    server.should_exit = True
    await task


def post(body_size: int, *extra: str, path: str = "/x") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: t", f"Content-Length: {body_size}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One response: its status and body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status = int(head.split(b" ", 2)[1])
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return status, await asyncio.wait_for(reader.readexactly(length), 5)


async def trickle(writer: asyncio.StreamWriter, pieces: list[bytes], pause: float) -> None:
    """Send `pieces` one at a time, until the server hangs up."""
    for piece in pieces:
        try:
            writer.write(piece)
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(pause)


async def closed(reader: asyncio.StreamReader) -> bool:
    return await asyncio.wait_for(reader.read(), 5) == b""


async def test_a_head_past_the_bound_is_431_in_openai_shape_and_closes(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await trickle(writer, [b"POST /x HTTP/1.1\r\nHost: t\r\nX-Big: "] + [b"a" * 1024] * 12, 0.01)
    status, body = await answer(reader)
    assert status == 431
    assert set(json.loads(body)["error"]) == {"message", "type", "param", "code"}
    assert await closed(reader)
    writer.close()


async def test_a_request_that_stops_arriving_is_408_after_the_read_time(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post(100) + b"only ten b")
    started = asyncio.get_running_loop().time()
    status, body = await answer(reader)
    waited = asyncio.get_running_loop().time() - started
    assert status == 408 and "did not arrive whole" in json.loads(body)["error"]["message"]
    assert 0.4 < waited < 3
    assert await closed(reader)
    writer.close()


async def test_a_long_body_may_take_as_long_as_it_keeps_coming(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post(10, path="/upload"))
    await trickle(writer, [b"x"] * 10, 0.15)  # 1.5 s in all, three times the read time
    assert await answer(reader) == (200, b"10")
    writer.close()


async def test_a_long_body_that_stops_arriving_is_408(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post(100, path="/upload") + b"only ten b")
    started = asyncio.get_running_loop().time()
    status, body = await answer(reader)
    waited = asyncio.get_running_loop().time() - started
    assert status == 408 and "stopped arriving" in json.loads(body)["error"]["message"]
    assert 0.4 < waited < 3
    writer.close()


async def test_a_head_trickled_byte_by_byte_is_408(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    pieces = [b"POST /x HTTP/1.1\r\n"] + [bytes([c]) for c in b"X-Slow: abcdefghijklmnopqrs"]
    await trickle(writer, pieces, 0.05)
    status, _ = await answer(reader)
    assert status == 408
    writer.close()


async def test_malformed_http_is_400_in_openai_shape(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello")
    status, body = await answer(reader)
    assert status == 400 and "malformed HTTP" in json.loads(body)["error"]["message"]
    writer.close()


async def test_requests_within_the_bounds_are_served_on_one_connection(port: int) -> None:
    """Heads that add up past the bound across requests, bodies far past it, a request in
    two pieces, and a connection kept open longer than the read time: none is refused."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    header = "X-Fill: " + "h" * 3000
    for _ in range(5):
        writer.write(post(3, header) + b"abc")
        assert await answer(reader) == (200, b"3")
    writer.write(post(1_000_000) + b"b" * 1_000_000)
    assert await answer(reader) == (200, b"1000000")
    writer.write(post(4)[:20])
    await asyncio.sleep(0.2)
    writer.write(post(4)[20:] + b"wxyz")
    assert await answer(reader) == (200, b"4")
    await asyncio.sleep(0.8)  # idle between requests is not a slow request
    writer.write(post(2) + b"ok")
    assert await answer(reader) == (200, b"2")
    writer.close()
