"""`GET /v1/models` and `GET /v1/models/{model}`: the models this gateway is configured for.

Both answer `HEAD` as they answer `GET` (CONTRACT §3): the same status and headers, no body
(the server drops it). Uptime checks and some clients probe the API with `HEAD /v1/models`.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from genai_api.errors import NotFound
from genai_api.http.deps import GatewayDep, TenantDep
from genai_api.http.responses import json_response
from genai_api.models.table import ModelInfo

router = APIRouter()
# One route answers both methods, registered before the schema's GET-only twin, so a 405
# names both in `Allow`; FastAPI would document a GET+HEAD route as two operations with one
# id (a warning), hence the twin.
_GET_HEAD = ["GET", "HEAD"]


@router.get("/v1/models", tags=["models"])  # the schema's (reached through the route below)
@router.api_route("/v1/models", methods=_GET_HEAD, include_in_schema=False)
@router.api_route("/models", methods=_GET_HEAD, include_in_schema=False)
async def list_models(gateway: GatewayDep, tenant: TenantDep) -> Response:
    return json_response({"object": "list", "data": [_model(m) for m in gateway.models]})


@router.get("/v1/models/{model:path}", tags=["models"])
@router.api_route("/v1/models/{model:path}", methods=_GET_HEAD, include_in_schema=False)
@router.api_route("/models/{model:path}", methods=_GET_HEAD, include_in_schema=False)
async def retrieve_model(model: str, gateway: GatewayDep, tenant: TenantDep) -> Response:
    """One configured model (the SDK's `models.retrieve`); any other is 404, as OpenAI answers
    for a model it does not have, even where the models file lets requests name any model."""
    for info in gateway.models:
        if info.name == model:
            return json_response(_model(info))
    raise NotFound(
        f"The model '{model}' does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


def _model(info: ModelInfo) -> dict[str, object]:
    return {"id": info.name, "object": "model", "created": 0, "owned_by": info.owned_by}
