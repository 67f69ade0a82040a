"""A direct path to the completion and embeddings endpoints, past FastAPI's routing machinery.

On a cache hit the pipeline's own work is a few tens of microseconds; FastAPI's exception
middleware, exit stack, router, route matching and dependency solving cost about as much
again (bench/profile_hit.py measures it). This middleware sits inside the app's middleware
stack (access log, body limit and the 500 handler still apply) and hands the hot POST paths
straight to the *same* endpoint functions the FastAPI routes declare, resolving their two
dependencies (`GatewayDep`, `TenantDep`) directly. Everything else, and every method other
than POST, goes on to FastAPI unchanged, and the routes stay in the OpenAPI schema.

Errors are answered by the app's registered exception handlers, looked up the way
Starlette's `ExceptionMiddleware` does; handlers for `Exception` itself are left to the
outer server-error middleware, as in Starlette.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from genai_api.gateway import Gateway

Endpoint = Callable[[Request, Gateway, str], Awaitable[Response]]


def hot_routes(*routers: APIRouter) -> dict[str, Endpoint]:
    """The POST paths of the completion and embeddings endpoints, read from the routers that
    declare them."""
    from genai_api.routes.completions import chat_completions, completions
    from genai_api.routes.embeddings import embeddings

    hot = (chat_completions, completions, embeddings)
    return {
        route.path: route.endpoint
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute) and route.endpoint in hot and "POST" in (route.methods or ())
    }


class HotRoutes:
    def __init__(self, app: ASGIApp, routes: Mapping[str, Endpoint]) -> None:
        self.app = app
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if endpoint is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive, send)
        try:
            gateway: Gateway = request.app.state.gateway
            response = await endpoint(request, gateway, gateway.auth.client(request))
        except Exception as exc:
            handler = _handler(request, exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        await response(scope, receive, send)


def _handler(
    request: Request, exc: Exception
) -> Callable[[Request, Exception], Awaitable[Response]] | None:
    handlers = request.app.exception_handlers
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            handler: Callable[[Request, Exception], Awaitable[Response]] = handlers[cls]
            return handler
    return None
