"""Counts every completion-endpoint request for Prometheus: endpoint, model, cache, status.

Raw ASGI like the access log, and like it reads the cache result from the response's own
`X-Cache` header, so every endpoint (chat, completions, embeddings, prompt templates,
streamed or not) is counted the same way without the routes doing anything.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genai_api.metrics import endpoint_of


class RequestMetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = endpoint_of(scope["path"]) if scope["type"] == "http" else None
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        status = 500
        cache: str | None = None

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
            gateway = getattr(getattr(scope.get("app"), "state", None), "gateway", None)
            if gateway is not None:
                model = scope.get("state", {}).get("model")
                gateway.metrics.request(endpoint, model, cache, status)
