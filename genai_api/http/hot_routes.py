"""A direct path to the completion and embeddings endpoints, in front of FastAPI's stack.

On a cache hit the pipeline's own work is a few tens of microseconds; FastAPI's layers
(its telemetry check, which reads the environment on every request, the server-error and
exception middlewares, the router, route matching and dependency solving) cost more than
that again (bench/profile_hit.py measures it). `GatewayApp` therefore hands a POST to one of
these paths straight to the *same* endpoint functions the FastAPI routes declare, through
the *same* access-log/metrics and body-limit middlewares the rest of the app has, and
answers errors with the app's registered exception handlers (one place, as for every other
route). Everything else goes through FastAPI unchanged, and the routes stay in the OpenAPI
schema. When FastAPI's OpenTelemetry bridge is configured at start-up, the direct path is
turned off, so every request is traced as before.

An exception raised while the answer is already being sent (a client gone mid-stream) is
left to the server, as Starlette's server-error middleware does once a response started.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from genai_api.gateway import Gateway
from genai_api.http.compression import Compressor

Endpoint = Callable[[Request, Gateway, str], Awaitable[Response]]
Handler = Callable[[Request, Exception], Awaitable[Response]]


def hot_routes(*routers: APIRouter) -> dict[str, Endpoint]:
    """The POST paths of `routers` (the generating and embeddings endpoints), each endpoint
    called as `endpoint(request, gateway, tenant)`: a route added to those routers is on the
    direct path with nothing more to say."""
    return {
        route.path: route.endpoint
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute) and "POST" in (route.methods or ())
    }


class HotEndpoints:
    """The innermost ASGI app of the direct path: resolve the endpoint's two dependencies
    (`GatewayDep`, `TenantDep`), call it, answer its errors through the app's handlers, and
    gzip a big whole answer for a client that asks (`compress`; the FastAPI routes have the
    same done by a middleware, which would cost every request here a `send` wrapper)."""

    def __init__(
        self, app: FastAPI, routes: Mapping[str, Endpoint], compress: Compressor | None = None
    ) -> None:
        self.app = app
        self.routes = dict(routes)
        self.compress = compress

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            gateway: Gateway = self.app.state.gateway
            response = await self.routes[scope["path"]](
                request, gateway, gateway.auth.client(request)
            )
        except Exception as exc:
            response = await self._answer(request, exc)
        compress = self.compress
        # The size, inline (a method call here costs a hit more than the rest of the check).
        if compress is not None and len(getattr(response, "body", b"")) >= compress.minimum_size:
            await compress.apply(response, scope)
        await response(scope, receive, send)

    async def _answer(self, request: Request, exc: Exception) -> Response:
        """The handler's answer to `exc`; if that handler fails too, the app's answer for an
        unexpected error (as Starlette's server-error middleware gives on the other routes)."""
        try:
            return await self._handler(exc)(request, exc)
        except Exception as failure:
            handlers: dict[Any, Any] = self.app.exception_handlers
            if Exception not in handlers:
                raise
            fallback: Handler = handlers[Exception]
            return await fallback(request, failure)

    def _handler(self, exc: Exception) -> Handler:
        """The handler Starlette would pick: the nearest class in the exception's MRO, down
        to the app's handler for `Exception` itself (the OpenAI-shaped 500)."""
        handlers: dict[Any, Any] = self.app.exception_handlers
        for cls in type(exc).__mro__:
            if cls in handlers:
                handler: Handler = handlers[cls]
                return handler
        raise exc


class GatewayApp(FastAPI):
    """FastAPI, with POSTs to the hot paths answered by `hot` (see the module docstring), and
    optionally everything answered through `outer` (CORS: a middleware that must see the
    answers of both paths, and the server-error middleware's answers too)."""

    hot: ASGIApp | None = None
    hot_paths: frozenset[str] = frozenset()
    outer: ASGIApp | None = None

    def use_outer(self, wrap: Callable[[ASGIApp], ASGIApp]) -> None:
        """Answer every request through `wrap(app)`; the app's own paths stay as they are."""
        self.outer = wrap(self._dispatch)

    def use_hot_routes(
        self,
        routes: Mapping[str, Endpoint],
        wrap: Callable[[ASGIApp], ASGIApp],
        compress: Compressor | None = None,
    ) -> None:
        """Answer POSTs to `routes` through `wrap(HotEndpoints)`: `wrap` applies the same
        middlewares the app stack has for them."""
        self.hot = wrap(HotEndpoints(self, routes, compress))
        self.hot_paths = frozenset(routes)

    def drop_hot_routes(self) -> None:
        self.hot, self.hot_paths = None, frozenset()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.outer is not None:
            await self.outer(scope, receive, send)
            return
        # `_dispatch`, written out: one coroutine less per request when there is no `outer`.
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] in self.hot_paths
            and self.hot is not None
        ):
            scope["app"] = self
            if self.root_path:
                scope["root_path"] = self.root_path
            await self.hot(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] in self.hot_paths
            and self.hot is not None
        ):
            scope["app"] = self
            if self.root_path:
                scope["root_path"] = self.root_path
            await self.hot(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
