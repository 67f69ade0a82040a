"""Turning a pipeline `Outcome` or `Streamed` into an HTTP answer with CONTRACT §4 headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import orjson
from starlette.responses import Response, StreamingResponse

from genai_api import sse
from genai_api.accounting import CacheStatus
from genai_api.errors import GatewayError
from genai_api.money import to_pico, usd
from genai_api.pipeline import Outcome
from genai_api.relay import Streamed


def cache_headers(outcome: Outcome) -> dict[str, str]:
    headers = {"X-Cache": outcome.status.value, "X-Cache-Key": outcome.key}
    if outcome.from_cache:
        headers["Age"] = str(outcome.entry.age())
        headers["X-Cache-Saved-Tokens"] = str(outcome.saved_tokens)
        # Rounded and written exactly as /v1/cache/stats adds it up, so headers sum to stats.
        headers["X-Cache-Saved-Cost-USD"] = usd(to_pico(outcome.saved_cost or Decimal(0)))
    return headers


def render(outcome: Outcome) -> Response:
    return Response(
        orjson.dumps(outcome.entry.response),
        media_type="application/json",
        headers=cache_headers(outcome),
    )


def stream_headers(streamed: Streamed) -> dict[str, str]:
    """The cache headers of a stream. A live COALESCED stream is `Age: 0`; what it saved is
    not known before the stream ends, so it is counted in the stats but not in headers."""
    if streamed.outcome is not None:
        headers = cache_headers(streamed.outcome)
    else:
        headers = {"X-Cache": streamed.status.value, "X-Cache-Key": streamed.key}
        if streamed.status is CacheStatus.COALESCED:
            headers["Age"] = "0"
    headers["Cache-Control"] = "no-cache"
    headers["X-Accel-Buffering"] = "no"  # proxies (nginx) must not hold chunks back
    return headers


def render_stream(streamed: Streamed) -> Response:
    """SSE: one event per chunk, `data: [DONE]` at the end; a failure after the first byte
    becomes an error event in OpenAI's envelope, and the stream closes without `[DONE]`."""
    return StreamingResponse(
        _events(streamed), media_type=sse.MEDIA_TYPE, headers=stream_headers(streamed)
    )


async def _events(streamed: Streamed) -> AsyncIterator[bytes]:
    chunks = streamed.chunks
    try:
        async for chunk in chunks:
            yield sse.encode(chunk)
    except GatewayError as exc:
        yield sse.encode(exc.envelope())
        return
    finally:
        await chunks.aclose()
    yield sse.DONE
