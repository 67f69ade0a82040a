"""gzip for whole JSON and text answers above a size, for clients that ask; never a stream.

Why not Starlette's `GZipMiddleware`: it wraps every request's `send` in a responder that
parses each answer's headers, even when the client did not send `Accept-Encoding: gzip` and
even when the answer is too small to compress (measured in-process, `bench.profile_hit`: ~10
µs on a ~35 µs chat hit; the openai SDK's httpx sends `Accept-Encoding: gzip` on every call).
Here the request's headers are looked at once, and a client that does not accept gzip goes
straight to the app. For one that does, an answer is only examined when its one body message
is at least `minimum_size` bytes; then it is compressed when

- it is whole (no `more_body`): a stream is never compressed, so Server-Sent Events (and
  anything else sent in pieces) go out as the app sends them, each chunk at once;
- its `Content-Type` is JSON or text (not `text/event-stream`), with no `Content-Encoding`;
- its status has a body worth it (not 1xx, 204, 206, 304).

Compression is zlib level 1 (README "Compression" has the figures: most of level 9's ratio
on JSON, at a fraction of its CPU); a body of 128 KiB or more is compressed in a worker
thread, as Starlette does, so it does not stall the event loop.

    GzipWhenAsked(app, minimum_size=1400, level=1, skip_paths={"/v1/embeddings"})
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

THREAD_FROM_BYTES = 128 * 1024
_TYPES = (b"application/json", b"text/")
_NEVER = b"text/event-stream"
_NO_BODY = (204, 206, 304)


def accepts_gzip(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether `Accept-Encoding` (on any number of lines) names gzip with a q-value above 0."""
    for name, value in headers:
        if name != b"accept-encoding" or b"gzip" not in (value := value.lower()):
            continue
        for coding in value.split(b","):
            token, _, params = coding.partition(b";")
            if token.strip() in (b"gzip", b"x-gzip"):
                q = params.strip().removeprefix(b"q=").strip() if params else b"1"
                try:
                    return float(q) > 0
                except ValueError:
                    return False
    return False


def gzip(body: bytes, level: int) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return compressor.compress(body) + compressor.flush()


class GzipWhenAsked:
    def __init__(
        self,
        app: ASGIApp,
        *,
        minimum_size: int,
        level: int,
        skip_paths: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.minimum_size = minimum_size
        self.level = level
        self.skip_paths = frozenset(skip_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and accepts_gzip(scope["headers"])
            and scope["path"] not in self.skip_paths
        ):
            await self.app(scope, receive, _Responder(send, self.minimum_size, self.level).send)
            return
        await self.app(scope, receive, send)


class _Responder:
    """One answer's `send`: holds the start until the first body message says whether the
    answer is whole and big enough, then sends it compressed or as it was."""

    __slots__ = ("_send", "level", "minimum_size", "start")

    def __init__(self, send: Send, minimum_size: int, level: int) -> None:
        self._send = send
        self.minimum_size = minimum_size
        self.level = level
        self.start: Message | None = None

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.start = message
            return
        start, self.start = self.start, None
        if start is None:  # the rest of a stream, or anything past the first body
            await self._send(message)
            return
        if kind == "http.response.body" and self._compressible(start, message):
            body = message["body"]
            if len(body) >= THREAD_FROM_BYTES:
                packed = await asyncio.to_thread(gzip, body, self.level)
            else:
                packed = gzip(body, self.level)
            if len(packed) < len(body):
                start = {**start, "headers": _headers(start["headers"], len(packed))}
                message = {**message, "body": packed}
        await self._send(start)
        await self._send(message)

    def _compressible(self, start: Message, message: Message) -> bool:
        if message.get("more_body") or len(message.get("body", b"")) < self.minimum_size:
            return False
        if start["status"] < 200 or start["status"] in _NO_BODY:
            return False
        media = b""
        for name, value in start.get("headers", ()):
            lower = name.lower()
            if lower == b"content-encoding":
                return False
            if lower == b"content-type":
                media = value.lower()
        return media.startswith(_TYPES) and not media.startswith(_NEVER)


def _headers(raw: Iterable[tuple[bytes, bytes]], length: int) -> list[tuple[bytes, bytes]]:
    """The answer's headers for its gzip body: its length, the coding, `Vary`."""
    out: list[tuple[bytes, bytes]] = []
    vary = b"Accept-Encoding"
    for name, value in raw:
        lower = name.lower()
        if lower == b"content-length":
            continue
        if lower == b"vary":
            vary = value + b", Accept-Encoding"
            continue
        out.append((name, value))
    out += [
        (b"content-length", str(length).encode()),
        (b"content-encoding", b"gzip"),
        (b"vary", vary),
    ]
    return out
