"""The generating endpoints: `POST /v1/chat/completions`, `POST /v1/completions` and
`POST /v1/responses` (and their un-prefixed aliases), each one `complete` call with its
`Api`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from genai_api.apis import CHAT, COMPLETIONS, RESPONSES, Api
from genai_api.controls import parse_controls
from genai_api.gateway import Gateway
from genai_api.http.body import read_json
from genai_api.http.deps import GatewayDep, TenantDep
from genai_api.http.openapi import json_body
from genai_api.http.render import render, render_stream

router = APIRouter()


async def complete(
    request: Request,
    gateway: Gateway,
    tenant: str,
    api: Api,
    body: dict[str, Any] | None = None,
    prompt: str | None = None,
) -> Response:
    """Shared by every generating API and prompt templates: validate, run the pipeline,
    render (as SSE when the body says `stream: true`)."""
    if body is None:
        body = await read_json(request)
    api.check(body)  # names the offending parameter
    model = gateway.models.get(body["model"])
    request.state.model = model.name
    controls = parse_controls(
        request.headers, body.pop("cache", None), max_ttl=gateway.settings.cache_max_ttl
    )
    call = gateway.pipeline.prepare(
        api, body, model=model, tenant=tenant, controls=controls, prompt=prompt
    )
    if body.get("stream") is True:
        return render_stream(await gateway.pipeline.run_stream(call))
    return render(await gateway.pipeline.run(call))


@router.post(
    "/v1/chat/completions",
    tags=["completions"],
    openapi_extra=json_body(CHAT.schema),
)
@router.post("/chat/completions", include_in_schema=False)
async def chat_completions(request: Request, gateway: GatewayDep, tenant: TenantDep) -> Response:
    """OpenAI chat completion, answered from the cache when an identical request was seen."""
    return await complete(request, gateway, tenant, CHAT)


@router.post("/v1/completions", tags=["completions"], openapi_extra=json_body(COMPLETIONS.schema))
@router.post("/completions", include_in_schema=False)
async def completions(request: Request, gateway: GatewayDep, tenant: TenantDep) -> Response:
    """OpenAI legacy text completion, cached the same way."""
    return await complete(request, gateway, tenant, COMPLETIONS)


@router.post("/v1/responses", tags=["completions"], openapi_extra=json_body(RESPONSES.schema))
@router.post("/responses", include_in_schema=False)
async def responses(request: Request, gateway: GatewayDep, tenant: TenantDep) -> Response:
    """OpenAI Responses API, cached the same way (streamed as its typed events)."""
    return await complete(request, gateway, tenant, RESPONSES)
