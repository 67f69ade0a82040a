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

    200 with `"status": "degraded"` when it serves only in part, `"reasons"` saying how (a
    load balancer should keep routing to it: every request is still answered, 200 on
    purpose; alert on the reasons instead):
    - `shard_down`: some primaries of a Redis Cluster do not answer (`"shards_down"` names
      them; their keys BYPASS until a replica is promoted);
    - `cache_full`: Redis refused a write for want of memory within the last 30 s (it is at
      `maxmemory` with nothing it may evict): hits are served, new answers are not stored
      (BYPASS). On a cluster `"shards_full"` names the primaries. Each `/readyz` tries a
      write that changes nothing, so it says `ready` again once Redis has room.
    503 only when the cache cannot serve at all (no primary answers)."""
    store = gateway.store
    if await store.ping():
        down, full = store.shards_down, store.full
        reasons = [reason for reason, why in (("shard_down", down), ("cache_full", full)) if why]
        doc: dict[str, object] = {
            "status": "degraded" if reasons else "ready",
            "cache": store.name,
            "coalescing": gateway.pipeline.leases.state,
        }
        if reasons:
            doc["reasons"] = reasons
        if down:
            doc["shards_down"] = list(down)
        shards_full = [part for part in full if part != store.name]  # a cluster's primaries
        if shards_full:
            doc["shards_full"] = shards_full
        return json_response(doc)
    down = store.shards_down
    error = GatewayError(
        f"The cache backend ({store.name}) is not answering"
        + (f" (down: {', '.join(down)})." if down else "."),
        status_code=503,
        code="cache_unavailable",
    )
    return error_response(error)
