"""gzip for whole JSON and text answers above a size, for clients that ask; never a stream.

Why not Starlette's `GZipMiddleware`: it wraps every request's `send` in a responder that
parses each answer's headers, even when the client did not send `Accept-Encoding: gzip` and
even when the answer is too small to compress (measured in-process, `bench.profile_hit`: ~10
µs on a ~35 µs chat hit; the openai SDK's httpx sends `Accept-Encoding: gzip` on every call).
Two pieces here, one per path an answer takes:

- `Compressor`, on the direct hot path (`genai_api.http.hot_routes`): the endpoint has built
  the whole answer before anything is sent, so its size is looked at first (a `len`); only
  an answer of at least `minimum_size` bytes leads to a look at the path and the request's
  headers, and no `send` is wrapped. A cache hit below the size costs a length check.
- `GzipWhenAsked`, a middleware for the FastAPI routes (stats, models, metrics, dashboard):
  the request's headers are looked at once; a client that does not accept gzip goes straight
  to the app; for one that does, an answer is held only until its one body message says
  whether it is whole and big enough.

Either way an answer is compressed only when

- it is whole: a stream is never compressed, so Server-Sent Events (and anything else sent in
  pieces) go out as the app sends them, each chunk at once;
- its `Content-Type` is JSON or text (not `text/event-stream`), with no `Content-Encoding`;
- its status has a body worth it (not 1xx, 204, 206, 304);
- its path is not one of `skip_paths` (the embeddings endpoints: README "Compression").

Compression is zlib level 1 (README "Compression" has the figures: most of level 9's ratio
on JSON, at a fraction of its CPU); a body of 128 KiB or more is compressed in a worker
thread, as Starlette does, so it does not stall the event loop.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Iterable

from starlette.responses import Response
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


async def gzip_off_loop(body: bytes, level: int) -> bytes:
    if len(body) >= THREAD_FROM_BYTES:
        return await asyncio.to_thread(gzip, body, level)
    return gzip(body, level)


def compressible(status: int, headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether an answer with this status and these headers may be gzipped (size aside)."""
    if status < 200 or status in _NO_BODY:
        return False
    media = b""
    for name, value in headers:
        lower = name.lower()
        if lower == b"content-encoding":
            return False
        if lower == b"content-type":
            media = value.lower()
    return media.startswith(_TYPES) and not media.startswith(_NEVER)


class Compressor:
    """The hot path's: applied to the whole answer an endpoint built, before it is sent.

    if len(getattr(response, "body", b"")) >= compressor.minimum_size:
        await compressor.apply(response, scope)
    """

    def __init__(self, *, minimum_size: int, level: int, skip_paths: Iterable[str] = ()) -> None:
        self.minimum_size = minimum_size
        self.level = level
        self.skip_paths = frozenset(skip_paths)

    async def apply(self, response: Response, scope: Scope) -> None:
        """gzip `response`'s body in place, when the client and the answer allow it. The
        caller has checked the size (`len(response.body) >= minimum_size`, a streamed answer
        having no body): nothing else is looked at for a small answer."""
        if scope["path"] in self.skip_paths or not accepts_gzip(scope["headers"]):
            return
        if not compressible(response.status_code, response.raw_headers):
            return
        body = bytes(response.body)
        packed = await gzip_off_loop(body, self.level)
        if len(packed) < len(body):
            response.body = packed
            response.raw_headers = _headers(response.raw_headers, len(packed))


class GzipWhenAsked:
    """The FastAPI routes': a middleware (see the module docstring)."""

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
        body = message.get("body", b"")
        if (
            kind == "http.response.body"
            and not message.get("more_body")
            and len(body) >= self.minimum_size
            and compressible(start["status"], start.get("headers", ()))
        ):
            packed = await gzip_off_loop(body, self.level)
            if len(packed) < len(body):
                start = {**start, "headers": _headers(start["headers"], len(packed))}
                message = {**message, "body": packed}
        await self._send(start)
        await self._send(message)


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
