"""`create_app(settings)`: the ASGI application, with everything built in its lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import httpx
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from genai_api import __version__
from genai_api.gateway import Gateway
from genai_api.http import handlers
from genai_api.http.compression import Compressor, GzipWhenAsked
from genai_api.http.cors import with_cors
from genai_api.http.hot_routes import GatewayApp, hot_routes
from genai_api.http.limits import BodyLimitMiddleware
from genai_api.http.observe import ObserveMiddleware
from genai_api.logs import flush_logs
from genai_api.providers import Provider
from genai_api.routes import (
    admin,
    completions,
    dashboard,
    embeddings,
    health,
    metrics,
    models,
    passthrough,
    prompts,
)
from genai_api.settings import Settings
from genai_api.warming.runner import start_background_warm

GZIP_LEVEL = 1  # see README "Compression": most of level 9's ratio on JSON at a fraction of its CPU


def create_app(
    settings: Settings | None = None,
    *,
    provider: Provider | None = None,
    http_client: httpx.AsyncClient | None = None,
) -> GatewayApp:
    """The gateway app; `provider` / `http_client` are seams for tests (a respx-mocked client)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: GatewayApp) -> AsyncIterator[None]:
        app.state.gateway = await Gateway.start(
            settings, provider=provider, http_client=http_client
        )
        if _telemetry_on(app):
            app.drop_hot_routes()  # every request goes through FastAPI's tracing
        app.state.warm_task = None
        if settings.cache_warm_file:
            app.state.warm_task = start_background_warm(app, settings)
        try:
            yield
        finally:
            if app.state.warm_task is not None:
                app.state.warm_task.cancel()
                with suppress(asyncio.CancelledError):
                    await app.state.warm_task
            await app.state.gateway.aclose()
            flush_logs()  # the access lines still buffered (also written at exit)

    app = GatewayApp(title="genai-api", version=__version__, lifespan=lifespan, docs_url="/docs")
    handlers.install(app)
    own = (completions, embeddings, prompts, models, admin, health, metrics, dashboard)
    for module in own:
        app.include_router(module.router)
    app.include_router(passthrough.router)  # last: every route of the gateway's own wins
    app.state.own_routes = own_routes = passthrough.OwnRoutes(m.router for m in own)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_request_bytes,
        upload_bytes=settings.upload_limit,
        uploads=own_routes.relayed,
    )
    app.add_middleware(ObserveMiddleware)
    compress = None
    if settings.gzip_min_bytes:
        # Embeddings answers are not compressed: their vectors compress poorly for a great
        # deal of CPU (README "Compression").
        gzip = {"minimum_size": settings.gzip_min_bytes, "level": GZIP_LEVEL}
        uncompressed = _paths(embeddings.router)
        app.add_middleware(GzipWhenAsked, **gzip, skip_paths=uncompressed)
        compress = Compressor(**gzip, skip_paths=uncompressed)
    app.use_hot_routes(
        hot_routes(completions.router, embeddings.router),
        lambda inner: ObserveMiddleware(BodyLimitMiddleware(inner, settings.max_request_bytes)),
        compress,
    )
    if settings.cors_origins:  # around both paths; off, a request pays nothing for it
        app.use_outer(lambda inner: with_cors(inner, settings.cors_origins))
    return app


def _paths(router: APIRouter) -> frozenset[str]:
    return frozenset(route.path for route in router.routes if isinstance(route, APIRoute))


def _telemetry_on(app: FastAPI) -> bool:
    """Whether FastAPI's OpenTelemetry bridge has a provider to report to (checked once)."""
    telemetry = getattr(app, "_native_telemetry", None)
    enabled = getattr(telemetry, "enabled", None)
    return bool(enabled()) if callable(enabled) else False
