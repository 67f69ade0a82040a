"""Turning a pipeline `Outcome` into an HTTP answer with the cache headers of CONTRACT §4."""

from __future__ import annotations

import orjson
from starlette.responses import Response

from genai_api.pipeline import Outcome


def cache_headers(outcome: Outcome) -> dict[str, str]:
    headers = {"X-Cache": outcome.status.value, "X-Cache-Key": outcome.key}
    if outcome.from_cache:
        headers["Age"] = str(outcome.entry.age())
        headers["X-Cache-Saved-Tokens"] = str(outcome.saved_tokens)
        headers["X-Cache-Saved-Cost-USD"] = format(outcome.saved_cost or 0, "f")
    return headers


def render(outcome: Outcome) -> Response:
    return Response(
        orjson.dumps(outcome.entry.response),
        media_type="application/json",
        headers=cache_headers(outcome),
    )
