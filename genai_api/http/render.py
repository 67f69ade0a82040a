"""Turning a pipeline `Outcome` or `Streamed` into an HTTP answer with CONTRACT §4 headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

from starlette.responses import Response, StreamingResponse

from genai_api import sse
from genai_api.errors import GatewayError
from genai_api.flights.relay import Streamed
from genai_api.http.responses import RawResponse
from genai_api.pipeline.answers import Outcome
from genai_api.savings.accounting import CacheStatus
from genai_api.savings.money import to_pico, usd


def cache_headers(outcome: Outcome) -> dict[str, str]:
    """CONTRACT §4's headers (names in lower case, as HTTP/1.1 sends them anyway)."""
    headers = {"x-cache": outcome.status.value, "x-cache-key": outcome.key}
    if outcome.from_cache:
        headers["age"] = str(outcome.entry.age())
        headers["x-cache-saved-tokens"] = str(outcome.saved_tokens)
        # Rounded and written exactly as /v1/cache/stats adds it up, so headers sum to stats.
        headers["x-cache-saved-cost-usd"] = usd(to_pico(outcome.saved_cost or Decimal(0)))
        if outcome.similarity is not None:
            headers["x-cache-similarity"] = f"{outcome.similarity:.4f}"
    if outcome.fallback is not None:  # a fallback model answered (CONTRACT §7)
        headers["x-upstream-model"] = outcome.fallback
    return headers


def render(outcome: Outcome) -> Response:
    return RawResponse(outcome.entry.body(), cache_headers(outcome))


def stream_headers(streamed: Streamed) -> dict[str, str]:
    """The cache headers of a stream. A live COALESCED stream is `Age: 0`; what it saved is
    not known before the stream ends, so it is counted in the stats but not in headers."""
    if streamed.outcome is not None:
        headers = cache_headers(streamed.outcome)
    else:
        headers = {"x-cache": streamed.status.value, "x-cache-key": streamed.key}
        if streamed.status is CacheStatus.COALESCED:
            headers["age"] = "0"
    if streamed.fallback is not None:
        headers["x-upstream-model"] = streamed.fallback
    headers["cache-control"] = "no-cache"
    headers["x-accel-buffering"] = "no"  # proxies (nginx) must not hold chunks back
    return headers


def render_stream(streamed: Streamed) -> Response:
    """SSE framed by the stream's API: one event per chunk, its end marker (`data: [DONE]`)
    last; a failure after the first byte becomes the API's error event, and the stream
    closes without the end marker."""
    return StreamingResponse(
        _events(streamed), media_type=sse.MEDIA_TYPE, headers=stream_headers(streamed)
    )


async def _events(streamed: Streamed) -> AsyncIterator[bytes]:
    api, chunks = streamed.api, streamed.chunks
    last = None
    try:
        async for chunk in chunks:
            last = chunk
            yield api.sse_event(chunk)
    except GatewayError as exc:
        yield api.sse_error(exc, last)
        return
    finally:
        await chunks.aclose()
    if api.sse_end:
        yield api.sse_end
