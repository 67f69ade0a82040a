"""Sees every answer once: one readable log line at INFO, and the Prometheus request count.

Raw ASGI, so it costs a few microseconds, and it reads the cache result from the response's
own `X-Cache` header, so every endpoint (chat, completions, embeddings, prompt templates,
streamed or not) is logged and counted the same way without the routes doing anything.
One wrapper for both jobs, because each `send` wrapper is paid on every hit.

Prompts and keys are never logged. The path and model are client-chosen text, so control
characters in them are escaped: a `%0A` in a URL cannot forge a log line.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genai_api.metrics import endpoint_of

log = logging.getLogger("genai_api.access")


class ObserveMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = endpoint_of(scope["path"])
        logging_on = log.isEnabledFor(logging.INFO)
        if endpoint is None and not logging_on:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        cache: str | None = None
        counted = False
        # Counted when the answer starts, before the client can see it, so a scrape that
        # follows an answer (on any worker) always includes it.
        gateway = getattr(getattr(scope.get("app"), "state", None), "gateway", None)
        metrics = gateway.metrics if endpoint is not None and gateway is not None else None

        async def capture(message: Message) -> None:
            nonlocal status, cache, counted
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    if name == b"x-cache":
                        cache = value.decode("latin-1")
                        break
                if metrics is not None:
                    metrics.request(endpoint, scope.get("state", {}).get("model"), cache, status)
                    counted = True
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            model = scope.get("state", {}).get("model")
            if metrics is not None and not counted:  # failed before it could answer
                metrics.request(endpoint, model, cache, status)
            if logging_on:
                log.info(
                    "%s %s %d cache=%s model=%s %.1fms",
                    scope["method"],
                    _printable(scope["path"]),
                    status,
                    cache or "-",
                    _printable(model or "-"),
                    (time.perf_counter() - start) * 1000,
                )


def _printable(text: str) -> str:
    """`text`, with control and other non-printable characters backslash-escaped."""
    if text.isprintable():
        return text
    return text.encode("unicode_escape").decode("ascii")
