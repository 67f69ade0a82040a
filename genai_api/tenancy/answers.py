"""The tenancy rule (CONTRACT §3) for the cached routes: what a request names must be the
caller's, and what an answer gives the caller becomes the caller's.

A Responses API request may continue another response (`previous_response_id`) or use a
file or vector store; its answer's id is a stored response the caller may later read,
delete or continue. The request's `Api` says which objects are which (`Api.references`,
`Api.created`); this module applies `Tenancy` to them around the pipeline:

- `check`: before anything else, every object the request names must be the caller's, or
  the answer is 404 and nothing reaches the upstream (or the cache);
- `record_outcome`: a whole answer's objects become the caller's before it is sent, unless
  it is a HIT (an entry is one tenant's, so its objects were recorded by the request that
  stored it: a hit costs no record);
- `record_stream`: a live stream's objects become the caller's before the event that first
  carries them is sent (`response.created`), so a client never holds an id the gateway has
  not recorded; a replayed stream is recorded as a whole answer is.

Nothing is done when the gateway does not record (an open gateway, `CACHE_SCOPE=shared`).
"""

from __future__ import annotations

from typing import Any

from genai_api.apis.base import Api
from genai_api.flights.relay import Chunks, Streamed
from genai_api.pipeline.answers import Outcome
from genai_api.savings.accounting import CacheStatus
from genai_api.tenancy.guard import Tenancy


async def check(tenancy: Tenancy, tenant: str, api: Api, body: dict[str, Any]) -> None:
    """Raise 404 (`not_found`) naming the first object of the request that is not the
    caller's; free when the rule is not enforced."""
    if tenancy.enforced:
        refs = api.references(body)
        if refs:
            await tenancy.check_all(tenant, refs)


async def record_outcome(tenancy: Tenancy, tenant: str, api: Api, outcome: Outcome) -> None:
    """Record what a whole (or replayed) answer gives the caller, unless it is a HIT."""
    if tenancy.recording and outcome.status is not CacheStatus.HIT:
        created = api.created(outcome.entry.response)
        if created:
            await tenancy.record_all(tenant, created)


async def record_stream(tenancy: Tenancy, tenant: str, api: Api, streamed: Streamed) -> Streamed:
    """`streamed`, recording what its events give the caller before they are sent."""
    if not tenancy.recording:
        return streamed
    if streamed.outcome is not None:  # a replay: its events hold what the entry holds
        await record_outcome(tenancy, tenant, api, streamed.outcome)
        return streamed
    streamed.chunks = _recorded(tenancy, tenant, api, streamed.chunks)
    return streamed


async def _recorded(tenancy: Tenancy, tenant: str, api: Api, chunks: Chunks) -> Chunks:
    seen: set[tuple[str, str]] = set()
    try:
        async for chunk in chunks:
            new = [item for item in api.created(chunk) if item not in seen]
            if new:
                await tenancy.record_all(tenant, new)
                seen.update(new)
            yield chunk
    finally:
        await chunks.aclose()
