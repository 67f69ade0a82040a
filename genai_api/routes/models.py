"""`GET /v1/models`: the models this gateway is configured for."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from genai_api.http.deps import GatewayDep, TenantDep
from genai_api.http.responses import json_response

router = APIRouter()


@router.get("/v1/models", tags=["models"])
@router.get("/models", include_in_schema=False)
async def list_models(gateway: GatewayDep, tenant: TenantDep) -> Response:
    data = [
        {"id": m.name, "object": "model", "created": 0, "owned_by": m.owned_by}
        for m in gateway.models
    ]
    return json_response({"object": "list", "data": data})
