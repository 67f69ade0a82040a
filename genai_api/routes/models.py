"""`GET /v1/models` and `GET /v1/models/{model}`: the models a client can call (`HEAD` too).

The list is the catalog's (`genai_api.models.catalog`): the table's models that their
upstream serves, with the upstream's `created` and `owned_by`, and on an open table the
default upstream's other models. Retrieving answers exactly what the list holds.

Both answer `HEAD` as they answer `GET` (CONTRACT §3): the same status and headers, no body
(the server drops it). Uptime checks and some clients probe the API with `HEAD /v1/models`.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from genai_api.errors import NotFound
from genai_api.http.deps import GatewayDep, TenantDep
from genai_api.http.responses import json_response

router = APIRouter()
# One route answers both methods, registered before the schema's GET-only twin, so a 405
# names both in `Allow`; FastAPI would document a GET+HEAD route as two operations with one
# id (a warning), hence the twin.
_GET_HEAD = ["GET", "HEAD"]


@router.get("/v1/models", tags=["models"])  # the schema's (reached through the route below)
@router.api_route("/v1/models", methods=_GET_HEAD, include_in_schema=False)
@router.api_route("/models", methods=_GET_HEAD, include_in_schema=False)
async def list_models(gateway: GatewayDep, tenant: TenantDep) -> Response:
    return json_response({"object": "list", "data": await gateway.catalog.models()})


@router.get("/v1/models/{model:path}", tags=["models"])
@router.api_route("/v1/models/{model:path}", methods=_GET_HEAD, include_in_schema=False)
@router.api_route("/models/{model:path}", methods=_GET_HEAD, include_in_schema=False)
async def retrieve_model(model: str, gateway: GatewayDep, tenant: TenantDep) -> Response:
    """One model of the list (the SDK's `models.retrieve`); any other is 404, as OpenAI
    answers for a model it does not have."""
    found = await gateway.catalog.get(model)
    if found is None:
        raise NotFound(
            f"The model '{model}' does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
    return json_response(found)
