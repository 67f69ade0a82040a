"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from genai_api.errors import GatewayError
from genai_api.http.deps import GatewayDep
from genai_api.http.handlers import error_response
from genai_api.http.responses import json_response

router = APIRouter()


@router.get("/healthz", tags=["health"])
@router.head("/healthz", include_in_schema=False)  # uptime monitors and some balancers
async def healthz() -> Response:
    """The process is alive (no dependency is consulted)."""
    return json_response({"status": "ok"})


@router.get("/readyz", tags=["health"])
@router.head("/readyz", include_in_schema=False)
async def readyz(gateway: GatewayDep) -> Response:
    """200 when the cache can serve now, else 503 (the API still serves, uncached).

    On a Redis Cluster some primaries may be down while the others serve: 200 with
    `"status": "degraded"` and `"shards_down"` naming them (their keys BYPASS until a replica
    is promoted); 503 only when no primary answers."""
    store = gateway.store
    if await store.ping():
        down = store.shards_down
        doc: dict[str, object] = {
            "status": "degraded" if down else "ready",
            "cache": store.name,
            "coalescing": gateway.pipeline.leases.state,
        }
        if down:
            doc["shards_down"] = list(down)
        return json_response(doc)
    down = store.shards_down
    error = GatewayError(
        f"The cache backend ({store.name}) is not answering"
        + (f" (down: {', '.join(down)})." if down else "."),
        status_code=503,
        code="cache_unavailable",
    )
    return error_response(error)
