"""Test plumbing for streams: a client that sees the app's bytes as they are sent, a
provider stream the test holds open and feeds chunk by chunk, a real HTTP provider, and
the chunks the streaming tests send.

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
import respx
import uvicorn
from openai.lib.streaming.chat import ChatCompletionStreamState
from starlette.types import ASGIApp, Message

from genai_api.app import create_app
from genai_api.settings import Settings
from tests.conftest import CHAT, Running
from tests.conftest import make_settings as _make_settings
from tests.redis_server import free_port


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


STREAM = {**CHAT, "stream": True}


def make_settings(**overrides: Any) -> Settings:
    """Test settings with a short upstream timeout, so a stuck stream fails the test fast."""
    return _make_settings(**{"upstream_timeout": 10, **overrides})


def chunk(
    delta: dict[str, Any] | None = None,
    *,
    finish: str | None = None,
    index: int = 0,
    logprobs: Any = None,
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-s1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "system_fingerprint": "fp_s",
        "choices": [
            {"index": index, "delta": delta or {}, "logprobs": logprobs, "finish_reason": finish}
        ],
        "usage": None,
    }


def usage_chunk(prompt: int = 12, completion: int = 5) -> dict[str, Any]:
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    return {**chunk(), "choices": [], "usage": usage}


HELLO = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Hel"}),
    chunk({"content": "lo!"}),
    chunk(finish="stop"),
    usage_chunk(),
]

TOOLS = [
    chunk(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ],
        }
    ),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Paris"}'}}]}),
    chunk(
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": "{}"},
                }
            ]
        }
    ),
    chunk(finish="tool_calls"),
    usage_chunk(),
]

TOKEN = {"token": "4", "logprob": -0.1, "bytes": [52], "top_logprobs": []}
REASONING = [
    chunk({"role": "assistant", "reasoning_content": "Let me "}),
    chunk({"reasoning_content": "think."}),
    chunk({"content": "4"}, logprobs={"content": [TOKEN], "refusal": None}),
    chunk({"content": "2"}, logprobs={"content": [{**TOKEN, "token": "2"}], "refusal": None}),
    chunk(finish="stop"),
    usage_chunk(),
]


def sse_route(upstream: respx.MockRouter, chunks: list[dict[str, Any]]) -> respx.Route:
    return upstream.post("/chat/completions").mock(
        side_effect=lambda request: httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=sse(*chunks)
        )
    )


async def collect(gw: Running, **extra: Any) -> tuple[httpx.Headers, list[Any]]:
    raw = await gw.client.chat.completions.with_raw_response.create(**STREAM, **extra)
    return raw.headers, [c async for c in raw.parse()]


def assembled(chunks: list[Any]) -> dict[str, Any]:
    """The completion the openai SDK's own accumulator builds from the chunks."""
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for c in chunks:
        state.handle_chunk(c)
    final = state.get_final_completion().choices[0]
    message = final.message.model_dump(exclude_none=True, exclude={"parsed"})
    for call in message.get("tool_calls", ()):
        call.pop("index", None)
        call["function"].pop("parsed_arguments", None)
    return {"message": message, "finish_reason": final.finish_reason}


async def raw_text(gw: Running, body: dict[str, Any]) -> tuple[httpx.Headers, bytes]:
    async with gw.http.stream("POST", "/v1/chat/completions", json=body) as response:
        return response.headers, await response.aread()


async def landed(gw: Running) -> None:
    """Wait until no flight is running (a disconnected client's call finishing)."""
    for _ in range(500):
        if not len(gw.gateway.pipeline.coalescer):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the flight never landed")


@asynccontextmanager
async def live_upstream(first: asyncio.Event) -> AsyncIterator[str]:
    """A real HTTP provider on a free port (the default aiohttp client cannot be mocked by
    respx): it sends the first chunk, waits for `first` to be set, then the rest."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        start = {"type": "http.response.start", "status": 200}
        await send({**start, "headers": [(b"content-type", b"text/event-stream")]})
        body = {"type": "http.response.body", "more_body": True}
        await send({**body, "body": sse(HELLO[0], done=False)})
        await first.wait()
        await send({**body, "body": sse(*HELLO[1:]), "more_body": False})

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="error")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        await task
