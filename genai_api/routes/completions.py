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
from genai_api.http.body import read_json_bytes
from genai_api.http.deps import GatewayDep, TenantDep
from genai_api.http.observe import note_model
from genai_api.http.openapi import json_body
from genai_api.http.render import render, render_stream
from genai_api.tenancy import answers as owned

router = APIRouter()


async def complete(
    request: Request,
    gateway: Gateway,
    tenant: str,
    api: Api,
    body: dict[str, Any] | None = None,
    prompt: str | None = None,
) -> Response:
    """Shared by every generating API and prompt templates: validate, check what the body
    names is the caller's, run the pipeline, record what the answer gives the caller, render
    (as SSE when the body says `stream: true`)."""
    raw = None  # the bytes of a body read here: its check and keys are known on a repeat
    if body is None:
        body, raw = await read_json_bytes(request)
    pipeline = gateway.pipeline
    pipeline.repeats.check(api, body, raw)  # names the offending parameter
    model = gateway.models.get(body["model"])
    note_model(request, model.name)
    tenancy = gateway.tenancy
    if tenancy.enforced:  # e.g. a previous_response_id of another tenant's: 404
        await owned.check(tenancy, tenant, api, body)
    controls = parse_controls(
        request.headers, body.pop("cache", None), max_ttl=gateway.settings.cache_max_ttl
    )
    caller = gateway.auth.identity(request, tenant) if gateway.auth.shared else None
    call = pipeline.prepare(
        api,
        body,
        caller=caller,
        model=model,
        tenant=tenant,
        controls=controls,
        prompt=prompt,
        raw=raw,
    )
    if body.get("stream") is True:
        streamed = await pipeline.run_stream(call)
        if streamed.fallback is not None:  # logged and counted as the model that answered
            note_model(request, streamed.fallback)
        if tenancy.recording:
            streamed = await owned.record_stream(tenancy, tenant, api, streamed)
        return render_stream(streamed)
    outcome = await pipeline.run(call)
    if outcome.fallback is not None:
        note_model(request, outcome.fallback)
    if tenancy.recording:  # e.g. the response id it is served: the tenant's from now on
        await owned.record_outcome(tenancy, tenant, api, outcome)
    return render(outcome)


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
