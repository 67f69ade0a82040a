"""Body size limit enforced while the body arrives, chunked uploads included.

A declared `Content-Length` over the limit is refused before a byte is read; otherwise the
bytes are counted as they arrive and the read fails with 413 the moment the limit passes.

Requests the pass-through relays (`uploads(scope)`) may be larger, up to `upload_bytes`
(`MAX_UPLOAD_BYTES`): their bodies are streamed upstream, never held. That check runs only
for a body that passes `MAX_REQUEST_BYTES`, so other requests pay nothing for it. Such a
request is marked `LONG_BODY` in its scope: the server protocol then bounds the time between
its body's chunks instead of the time the whole request takes (a 500 MB upload is slow).
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genai_api.errors import RequestTooLarge

LONG_BODY = "genai.long_body"


class BodyLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        upload_bytes: int | None = None,
        uploads: Callable[[Scope], bool] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes if upload_bytes and uploads else max_bytes
        self.uploads = uploads

    def _upload(self, scope: Scope) -> bool:
        """Whether this request may have the larger limit (and is marked for it)."""
        if self.uploads is None or self.upload_bytes <= self.max_bytes:
            return False
        if self.uploads(scope):
            scope[LONG_BODY] = True
            return True
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    upload = self._upload(scope)
                    if not upload or declared > self.upload_bytes:
                        await _too_large(send, self.upload_bytes if upload else limit)
                        return
                    limit = self.upload_bytes
        seen = 0

        async def limited() -> Message:
            nonlocal seen, limit
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    if limit == self.max_bytes and self._upload(scope):
                        limit = self.upload_bytes
                    if seen > limit:
                        raise RequestTooLarge(_message(limit), code="request_too_large")
            return message

        await self.app(scope, limited, send)


def _message(limit: int) -> str:
    return f"The request body is larger than the limit of {limit} bytes."


async def _too_large(send: Send, limit: int) -> None:
    body = orjson.dumps(RequestTooLarge(_message(limit), code="request_too_large").envelope())
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
