"""Test plumbing for streams: a client that sees the app's bytes as they are sent, and a
provider stream the test holds open and feeds chunk by chunk.

`httpx.ASGITransport` runs the app to the end before it returns the response, so no test
through it could tell a live relay from a buffered one. `StreamingASGITransport` hands each
body message over as the app sends it, and closing the response early tells the app the
client went away (`http.disconnect`), as a real server does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai
import orjson
from starlette.types import ASGIApp, Message

from genai_api.app import create_app
from genai_api.settings import Settings
from tests.conftest import Running


class _Body(httpx.AsyncByteStream):
    def __init__(self, pieces: asyncio.Queue[bytes | None], task: asyncio.Task[None]) -> None:
        self.pieces = pieces
        self.task = task
        self.gone = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (piece := await self.pieces.get()) is not None:
            yield piece

    async def aclose(self) -> None:
        self.gone.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, 5)


class StreamingASGITransport(httpx.AsyncBaseTransport):
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": request.method,
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
            "scheme": request.url.scheme,
            "path": request.url.path,
            "raw_path": request.url.raw_path.split(b"?")[0],
            "query_string": request.url.query,
            "server": (request.url.host, request.url.port or 80),
            "client": ("127.0.0.1", 50000),
            "root_path": "",
        }
        pieces: asyncio.Queue[bytes | None] = asyncio.Queue()
        start: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        stream: _Body | None = None
        received = False

        async def receive() -> Message:
            nonlocal received
            if not received:
                received = True
                return {"type": "http.request", "body": body, "more_body": False}
            assert stream is not None
            await stream.gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.set_result(message)
            elif message["type"] == "http.response.body":
                if message.get("body"):
                    pieces.put_nowait(message["body"])
                if not message.get("more_body"):
                    pieces.put_nowait(None)

        async def run() -> None:
            try:
                await self.app(scope, receive, send)
            finally:
                pieces.put_nowait(None)

        task = asyncio.create_task(run())
        stream = _Body(pieces, task)
        await asyncio.wait([start, task], return_when=asyncio.FIRST_COMPLETED)
        if not start.done():
            await task  # raises the app's error
            raise RuntimeError("the app returned without a response")
        message = start.result()
        return httpx.Response(
            message["status"],
            headers=message["headers"],
            stream=stream,
            request=request,
            extensions={"app_task": task},  # lets a test see the request end
        )


@asynccontextmanager
async def streaming(settings: Settings, api_key: str = "client-key") -> AsyncIterator[Running]:
    """Like `running()`, with clients that receive streamed bytes live."""
    app = create_app(settings, http_client=httpx.AsyncClient())
    async with app.router.lifespan_context(app):
        transport = StreamingASGITransport(app)
        auth = {"Authorization": f"Bearer {api_key}"}  # one tenant for both clients
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gw", headers=auth
        ) as http:
            client = openai.AsyncOpenAI(
                base_url="http://gw/v1", api_key=api_key, http_client=http, max_retries=0
            )
            yield Running(app, http, client)


def sse(*chunks: dict[str, Any], done: bool = True) -> bytes:
    """The provider's SSE bytes for `chunks`."""
    text = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks)
    return text + (b"data: [DONE]\n\n" if done else b"")


class HeldStream:
    """A provider stream the test writes to: each `send` reaches the wire at once, and the
    response stays open until `end` (or `cut`). `closed` is set when the gateway stops reading.
    """

    def __init__(self) -> None:
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.called = asyncio.Event()

    def send(self, *chunks: dict[str, Any]) -> None:
        self._queue.put_nowait(sse(*chunks, done=False))

    def end(self) -> None:
        self._queue.put_nowait(b"data: [DONE]\n\n")
        self._queue.put_nowait(None)

    def cut(self) -> None:
        self._queue.put_nowait(None)

    async def _body(self) -> AsyncIterator[bytes]:
        try:
            while (piece := await self._queue.get()) is not None:
                yield piece
        finally:
            self.closed.set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.called.set()
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=self._body()
        )
