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
    """200 when the cache backend answers now, else 503 (the API still serves, uncached)."""
    if await gateway.store.ping():
        leases = gateway.pipeline.leases
        return json_response(
            {"status": "ready", "cache": gateway.store.name, "coalescing": leases.state}
        )
    error = GatewayError(
        f"The cache backend ({gateway.store.name}) is not answering.",
        status_code=503,
        code="cache_unavailable",
    )
    return error_response(error)
