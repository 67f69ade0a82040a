"""`GET /metrics`: Prometheus text format (all workers' values with `--workers N`).

Open by default, as Prometheus endpoints usually are (they hold counts, never prompts or
keys); `METRICS_REQUIRE_ADMIN=true` puts it behind the admin key.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from genai_api.http.deps import GatewayDep

router = APIRouter()


@router.get("/metrics", tags=["health"])
async def metrics(request: Request, gateway: GatewayDep) -> Response:
    if gateway.settings.metrics_require_admin:
        gateway.auth.admin(request)
    body, content_type = gateway.metrics.render()
    return Response(body, media_type=content_type)
