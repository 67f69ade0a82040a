"""`GET /v1/prompts` and `POST /v1/prompts/{name}/completions`: named templates, cached.

A prompt completion renders the template and then takes the chat path, `complete()`,
with the template's name in the storage key, so `DELETE /v1/cache {"prompt": name}`
drops exactly that template's entries.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from genai_api.apis import CHAT
from genai_api.http.body import read_json
from genai_api.http.deps import GatewayDep, TenantDep
from genai_api.http.openapi import json_body
from genai_api.http.responses import json_response
from genai_api.routes.completions import complete

router = APIRouter()


class PromptCompletionRequest(BaseModel):
    """For the OpenAPI document only: the route reads and checks the body itself."""

    model_config = ConfigDict(extra="allow")

    variables: dict[str, str | float] = Field(
        default_factory=dict,
        description="A value for each of the template's variables (GET /v1/prompts lists "
        "them); any chat parameter (temperature, max_tokens, stream, ...) may sit beside it.",
    )


@router.get("/v1/prompts", tags=["prompts"])
async def list_prompts(gateway: GatewayDep, tenant: TenantDep) -> Response:
    """The templates with the variables each one needs."""
    return json_response(
        {"object": "list", "data": [template.describe() for template in gateway.prompts]}
    )


@router.post(
    "/v1/prompts/{name}/completions",
    tags=["prompts"],
    openapi_extra=json_body(
        PromptCompletionRequest, description="The template's variables plus chat parameters."
    ),
)
async def prompt_completion(
    name: str, request: Request, gateway: GatewayDep, tenant: TenantDep
) -> Response:
    """Render `name` with `{"variables": {...}}`, plus any chat parameter, and complete it."""
    template = gateway.prompts.get(name)
    params = await read_json(request)
    variables = params.pop("variables", {})
    body = template.request_body(variables, params)
    return await complete(
        request,
        gateway,
        tenant,
        CHAT,
        body=body,
        prompt=template.name,
    )
