"""`GET /v1/models` and `GET /v1/models/{model}`: the models a client can call (`HEAD` too).

The list is the catalog's (`genai_api.models.catalog`): the table's models that their
upstream serves, with the upstream's `created` and `owned_by`, and on an open table the
default upstream's other models. Retrieving answers exactly what the list holds.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from genai_api.errors import NotFound
from genai_api.http.deps import GatewayDep, TenantDep
from genai_api.http.responses import json_response

router = APIRouter()


# Decorators register bottom-up: each GET before its HEAD, so a 405 names GET (`Allow`).
@router.head("/models", include_in_schema=False)
@router.get("/models", include_in_schema=False)
@router.head("/v1/models", include_in_schema=False)
@router.get("/v1/models", tags=["models"])
async def list_models(gateway: GatewayDep, tenant: TenantDep) -> Response:
    return json_response({"object": "list", "data": await gateway.catalog.models()})


@router.head("/models/{model:path}", include_in_schema=False)
@router.get("/models/{model:path}", include_in_schema=False)
@router.head("/v1/models/{model:path}", include_in_schema=False)
@router.get("/v1/models/{model:path}", tags=["models"])
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
