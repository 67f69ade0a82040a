"""A provider that cuts its chunked stream (the connection closes before the last chunk):
the client is told the upstream stream was cut, in OpenAI's error shape with a 502 and the
code `upstream_stream_cut`, never the HTTP client's own wording; nothing is stored, and the
call counts as a provider error. A whole (non-streamed) answer cut short is `upstream_cut`,
not "could not be reached". Against a live upstream on a real socket, through both HTTP
clients the provider can use (aiohttp, the default, and httpx)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai
import pytest

from genai_api.app import create_app
from tests.conftest import make_settings, stats_doc
from tests.streaming_client import HELLO, STREAM, sse

INTERNAL = ("payload", "TransferEncodingError", "incomplete chunked", "peer closed")


class CuttingUpstream:
    """Answers every POST with a chunked SSE stream of the first `chunks` chunks of `HELLO`,
    then closes the connection without the terminating chunk (or `[DONE]`)."""

    def __init__(self, chunks: int, whole: bool = False) -> None:
        self.chunks = chunks
        self.whole = whole  # answer JSON with a Content-Length it does not keep to instead
        self.calls = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        self.calls += 1
        if self.whole:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b'Content-Length: 500\r\n\r\n{"id": "chatcmpl-1", "choi'
            )
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.transport.abort()
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        for chunk in HELLO[: self.chunks]:
            data = sse(chunk, done=False)
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.transport.abort()  # cut: no "0\r\n\r\n"


@asynccontextmanager
async def cutting(chunks: int, whole: bool = False) -> AsyncIterator[tuple[CuttingUpstream, str]]:
    upstream = CuttingUpstream(chunks, whole)
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield upstream, f"http://127.0.0.1:{port}/v1"
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def gateway(base_url: str, client: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app with the provider's real HTTP client (not a test double) on `base_url`."""
    settings = make_settings(openai_base_url=base_url, upstream_http_client=client)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            yield http


def _events(text: str) -> list[Any]:
    return [json.loads(e[6:]) for e in text.split("\n\n") if e.startswith("data: {")]


@pytest.mark.parametrize("client", ["aiohttp", "httpx"])
async def test_a_stream_cut_mid_way_ends_with_an_error_event_saying_so(client: str) -> None:
    async with cutting(chunks=2) as (upstream, url), gateway(url, client) as http:
        first = await http.post("/v1/chat/completions", json=STREAM)
        second = await http.post("/v1/chat/completions", json=STREAM)
        stats = stats_doc(await http.get("/v1/cache/stats"))
    events = _events(first.text)
    assert first.status_code == 200 and first.headers["x-cache"] == "MISS"
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"  # relayed as it came
    error = events[-1]["error"]
    assert error == {
        "message": "The upstream provider cut the stream before it finished.",
        "type": "api_error",
        "param": None,
        "code": "upstream_stream_cut",
    }
    assert not any(word in first.text for word in INTERNAL)
    assert second.headers["x-cache"] == "MISS"  # nothing was stored
    assert upstream.calls == 2
    assert stats["provider_errors"] == 2


@pytest.mark.parametrize("client", ["aiohttp", "httpx"])
async def test_a_stream_cut_before_its_first_chunk_is_a_502(client: str) -> None:
    async with cutting(chunks=0) as (_, url), gateway(url, client) as http:
        answer = await http.post("/v1/chat/completions", json=STREAM)
        sdk = openai.AsyncOpenAI(base_url="http://gw/v1", api_key="k", http_client=http)
        with pytest.raises(openai.APIStatusError) as raised:
            await sdk.chat.completions.create(**STREAM)
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "upstream_stream_cut"
    assert answer.json()["error"]["message"] == (
        "The upstream provider cut the stream before it finished."
    )
    assert raised.value.status_code == 502
    assert not any(word in answer.text for word in INTERNAL)


@pytest.mark.parametrize("client", ["aiohttp", "httpx"])
async def test_a_whole_answer_cut_short_says_so_and_is_not_unreachable(client: str) -> None:
    async with cutting(chunks=0, whole=True) as (upstream, url), gateway(url, client) as http:
        answer = await http.post("/v1/chat/completions", json=STREAM | {"stream": False})
        stats = stats_doc(await http.get("/v1/cache/stats"))
    assert answer.status_code == 502
    assert answer.json()["error"] == {
        "message": "The upstream provider closed the connection before its answer was complete.",
        "type": "api_error",
        "param": None,
        "code": "upstream_cut",
    }
    assert (upstream.calls, stats["provider_errors"], stats["misses"]) == (1, 1, 0)
