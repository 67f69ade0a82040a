"""One readable log line per request at INFO: method, path, status, cache result, latency.

Written as raw ASGI middleware so it costs a few microseconds, and it reads the cache result
from the response's own `X-Cache` header, so every endpoint is logged the same way.
Prompts and keys are never logged. The path and model are client-chosen text, so control
characters in them are escaped: a `%0A` in a URL cannot forge a log line.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("genai_api.access")


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        cache = "-"

        async def capture(message: Message) -> None:
            nonlocal status, cache
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    if name == b"x-cache":
                        cache = value.decode("latin-1")
                        break
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            model = scope.get("state", {}).get("model", "-")
            log.info(
                "%s %s %d cache=%s model=%s %.1fms",
                scope["method"],
                _printable(scope["path"]),
                status,
                cache,
                _printable(model),
                (time.perf_counter() - start) * 1000,
            )


def _printable(text: str) -> str:
    """`text`, with control and other non-printable characters backslash-escaped."""
    if text.isprintable():
        return text
    return text.encode("unicode_escape").decode("ascii")
