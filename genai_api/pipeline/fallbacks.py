"""Fallbacks: when a model's upstream fails, the same request for its fallback models.

A request whose answer failed with 429, a 5xx, a timeout or an unreachable upstream (and, for
a stream, before its first byte: after it the client has the stream) is made again for each
of its model's fallbacks in turn (`ModelInfo.fallbacks`, from the models file), within what
is left of the request's `UPSTREAM_TIMEOUT`. Each attempt is an ordinary request for the
fallback model, through the whole pipeline: its own key, lookup, flight, TTL, prices and
counters, and its fallbacks in turn. So the answer is the fallback's in every respect
(CONTRACT §7): stored under the key that same request for the fallback has (later a HIT
for it), never under the failed model's, priced and counted as the fallback, and carrying
`X-Upstream-Model`. Requests that had joined the failed flight get its error, fall back in
turn and join the fallback's flight: one call, the same answer for all of them. Any other
error (a 400, a 401) is the answer; so is the last fallback's error.

    answer = await fallbacks.after(model, error, started, lambda info: run(retarget(call, info)))
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

from genai_api.errors import ProviderError, ProviderTimeout
from genai_api.models.table import ModelInfo

log = logging.getLogger("genai_api.pipeline")


class Answered(Protocol):
    fallback: str | None
    """The fallback model that answered, None when the model asked for did."""


A = TypeVar("A", bound=Answered)


def eligible(error: ProviderError) -> bool:
    """A failure of the upstream itself (rate limit, server error, timeout, unreachable),
    which another upstream may not have; not an answer about the request."""
    return error.status_code == 429 or error.status_code >= 500


class Fallbacks:
    def __init__(
        self,
        models: Callable[[str], ModelInfo],
        budget: float,
        on_fallback: Callable[[str, str], None] | None = None,
    ) -> None:
        self.models = models  # the table's lookup
        self.budget = budget  # UPSTREAM_TIMEOUT: for the whole request, fallbacks included
        self.on_fallback = on_fallback  # (model, fallback): the metrics' count

    def deadline(self, started: float) -> float:
        return started + self.budget

    async def after(
        self,
        model: ModelInfo,
        error: ProviderError,
        started: float,
        attempt: Callable[[ModelInfo], Awaitable[A]],
    ) -> A:
        """The first answer `attempt` gets for one of `model`'s fallbacks, tried in order
        after `error` (raised when it is not a failure of the upstream, or when every
        fallback failed: then the last one's error), all by `deadline(started)`."""
        if not eligible(error):
            raise error
        loop = asyncio.get_running_loop()
        deadline = self.deadline(started)
        for name in model.fallbacks:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            log.warning(
                "upstream of %s failed (%d%s): trying fallback %s",
                model.name,
                error.status_code,
                f" {error.code}" if error.code else "",
                name,
            )
            if self.on_fallback is not None:
                self.on_fallback(model.name, name)
            try:
                async with asyncio.timeout(remaining):
                    answer = await attempt(self.models(name))
            except TimeoutError:
                raise ProviderTimeout() from None  # the request's time is up
            except ProviderError as exc:
                if not eligible(exc):
                    raise
                error = exc
                continue
            if answer.fallback is None:  # else a fallback of the fallback answered
                answer.fallback = name
            return answer
        raise error


async def within(
    deadline: float, chunks: AsyncGenerator[dict[str, Any], None]
) -> AsyncGenerator[dict[str, Any], None]:
    """`chunks` until the loop's clock reaches `deadline`; then `ProviderTimeout` (a stream
    that fell back gets what is left of the request's time, as a non-streamed answer does)."""
    try:
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise ProviderTimeout() from None
            yield chunk
    finally:
        await chunks.aclose()
