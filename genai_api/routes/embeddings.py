"""`POST /v1/embeddings` (and `/embeddings`): every input its own cache entry."""

from __future__ import annotations

import asyncio
from typing import Any

import tiktoken
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from genai_api.apis.embeddings import EmbeddingRequest, embedding_inputs
from genai_api.apis.schema import validate
from genai_api.controls import parse_controls
from genai_api.embeddings.runner import OFFLOAD_VECTORS
from genai_api.gateway import Gateway
from genai_api.http.body import read_json_bytes
from genai_api.http.deps import GatewayDep, TenantDep
from genai_api.http.observe import note_model
from genai_api.http.openapi import json_body
from genai_api.http.render_embeddings import render_embeddings
from genai_api.models.table import ModelInfo
from genai_api.savings.tokenizer import EncodingNotLoadedError

router = APIRouter()


def _encoding(gateway: Gateway, model: ModelInfo) -> tiktoken.Encoding | None:
    """The model's tokenizer when known (models table); None for models we cannot attribute."""
    if model.tokenizer is None:
        return None
    try:
        return gateway.tokens.get_encoding(model.tokenizer)
    except EncodingNotLoadedError:
        return None


def _plainly_valid(body: dict[str, Any]) -> bool:
    """True when the schema's typed fields are of the commonest valid form, so strict pydantic
    (~45 µs on 64 inputs, which `embedding_inputs` has already checked) would pass: `validate`
    runs otherwise, and words the error. Other fields are `extra="allow"`: not validated."""
    model, dimensions = body["model"], body.get("dimensions")
    return (
        type(model) is str
        and 0 < len(model) <= 256
        and body.get("encoding_format") in (None, "float", "base64")
        and (dimensions is None or (type(dimensions) is int and 1 <= dimensions <= 65_536))
        and type(body.get("user", "")) is str
        and type(body.get("cache", {})) is dict
    )


async def embed(
    request: Request, gateway: Gateway, tenant: str, body: dict[str, Any] | None = None
) -> Response:
    """Validate, run the per-input pipeline, render; `body` when the caller already has it."""
    raw = None  # the bytes of a body read here: a batch seen before is not keyed again
    if body is None:
        body, raw = await read_json_bytes(request)
    if not isinstance(body.get("model"), str) or "input" not in body:
        validate(EmbeddingRequest, body)  # names the missing or mistyped parameter
    model = gateway.models.get(body["model"])
    encoding = _encoding(gateway, model)
    items = embedding_inputs(
        body["input"], max_token=encoding.max_token_value if encoding is not None else None
    )
    if not _plainly_valid(body):
        validate(EmbeddingRequest, body)
    note_model(request, model.name)
    controls = parse_controls(
        request.headers, body.pop("cache", None), max_ttl=gateway.settings.cache_max_ttl
    )
    batch = await gateway.pipeline.prepare_embeddings(
        body, items, model=model, tenant=tenant, controls=controls, encoding=encoding, raw=raw
    )
    outcome = await gateway.pipeline.run_embeddings(batch)
    note_model(request, outcome.model)  # the fallback's, when one answered
    encoding_format = body.get("encoding_format") or "float"
    if len(items) > OFFLOAD_VECTORS:  # a big answer takes long enough to stall the loop
        return await asyncio.to_thread(render_embeddings, outcome, encoding_format)
    return render_embeddings(outcome, encoding_format)


@router.post("/v1/embeddings", tags=["embeddings"], openapi_extra=json_body(EmbeddingRequest))
@router.post("/embeddings", include_in_schema=False)
async def embeddings(request: Request, gateway: GatewayDep, tenant: TenantDep) -> Response:
    """OpenAI embeddings; only the inputs missing from the cache go upstream."""
    return await embed(request, gateway, tenant)
