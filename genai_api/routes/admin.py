"""Admin endpoints: savings statistics and invalidation."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from genai_api.errors import CacheUnavailable, GatewayError, InvalidRequest
from genai_api.http.deps import AdminDep, GatewayDep
from genai_api.http.responses import json_response
from genai_api.keys import segment, tag
from genai_api.savings.backends import INTERVALS

router = APIRouter()

_FILTERS = ("model", "key", "tenant", "prompt")


@router.get("/v1/cache/stats", tags=["admin"])
async def cache_stats(
    gateway: GatewayDep, _: AdminDep, series: str | None = None, points: str | None = None
) -> Response:
    """CONTRACT §3 savings; `?series=minute|hour[&points=N]` adds the last N time buckets."""
    if series is not None and series not in INTERVALS:
        raise InvalidRequest("'series' must be 'minute' or 'hour'.", param="series")
    count: int | None = None
    if points is not None:
        if not points.isdigit() or int(points) < 1:
            raise InvalidRequest("'points' must be a positive integer.", param="points")
        count = int(points)
    try:
        doc = await gateway.accounting.snapshot(series, count)
    except CacheUnavailable as exc:
        raise GatewayError(
            "The stats backend is not answering.", status_code=503, code="cache_unavailable"
        ) from exc
    return json_response(doc)


@router.delete("/v1/cache", tags=["admin"])
async def invalidate(request: Request, gateway: GatewayDep, _: AdminDep) -> Response:
    """Delete entries matching every given field (AND); none given = the whole namespace."""
    raw = await request.body()
    filters: dict[str, Any] = {}
    if raw.strip():
        try:
            filters = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidRequest("The body must be a JSON object.", code="invalid_json") from None
        if not isinstance(filters, dict):
            raise InvalidRequest("The body must be a JSON object.", code="invalid_json")
    for name, value in filters.items():
        if name not in _FILTERS:
            raise InvalidRequest(f"Unknown filter '{name}'.", param=name)
        if value is not None and (not isinstance(value, str) or not value):
            raise InvalidRequest(f"'{name}' must be a non-empty string.", param=name)
    ns = gateway.settings.cache_namespace
    model = segment(filters["model"]) if filters.get("model") else "*"
    prompt = segment(filters["prompt"]) if filters.get("prompt") else "*"
    key = filters["key"].lower() if filters.get("key") else "*"
    if key != "*" and (len(key) != 64 or any(c not in "0123456789abcdef" for c in key)):
        raise InvalidRequest("'key' must be a SHA-256 hex digest (X-Cache-Key).", param="key")
    if key != "*" and gateway.pipeline.tagged:
        key = tag(key)  # a cluster's keys end in the digest as a hash tag; braces glob literally
    tenant = gateway.auth.tenant_of(filters["tenant"]) if filters.get("tenant") else "*"
    try:
        rest = f"*:{tenant}:{model}:{prompt}:{key}"
        deleted = await gateway.store.delete_matching(f"{ns}:e:{rest}")
        # Live leases stay; those of holders that died (they carry no TTL) go, if Redis lets.
        with contextlib.suppress(CacheUnavailable):
            await gateway.pipeline.leases.sweep(rest)
        if gateway.pipeline.semantic is not None:  # the vectors go with their entries
            await gateway.pipeline.semantic.forget(
                tenant=None if tenant == "*" else tenant,
                model=filters.get("model") or None,
                prompt=filters.get("prompt") or None,
                key=None if key == "*" else key,
            )
    except CacheUnavailable as exc:
        raise GatewayError(
            "The cache backend is not answering.", status_code=503, code="cache_unavailable"
        ) from exc
    return json_response({"deleted": deleted})
