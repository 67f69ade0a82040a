"""Sees every answer once: one readable log line at INFO, and the Prometheus request count.

Raw ASGI, so it costs a few microseconds, and it reads the cache result from the response's
own `X-Cache` header, so every endpoint (chat, completions, embeddings, prompt templates,
streamed or not) is logged and counted the same way without the routes doing anything.
One wrapper for both jobs, because each `send` wrapper is paid on every hit.

Prompts and keys are never logged; the line itself is `genai_api.http.access_log`'s (its
client-chosen text redacted and escaped, its write buffered).
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genai_api.http.access_log import AccessLog
from genai_api.metrics import endpoint_of


def note_model(request: Request, model: str) -> None:
    """Say which model answers this request, for its access line and its count: what
    `request.state.model = model` does, without building the `State` object (a failed
    `hasattr` and two Python-level calls: ~0.5 µs of a cache hit). `request.state` sees it."""
    request.scope.setdefault("state", {})["model"] = model


class ObserveMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.access = AccessLog()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = endpoint_of(scope["path"])
        logging_on = self.access.enabled()
        if endpoint is None and not logging_on:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        cache: str | None = None
        counted = False
        # Counted when the answer starts, before the client can see it, so a scrape that
        # follows an answer (on any worker) always includes it.
        metrics = None
        if endpoint is not None:
            try:
                metrics = scope["app"].state.gateway.metrics
            except (KeyError, AttributeError):  # no app, or not started: nothing to count in
                pass

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
                ms = (time.perf_counter() - start) * 1000
                self.access.write(scope["method"], scope["path"], status, cache, model, ms)
