"""A flight's provider call made into the entry it stores: whole, or streamed into a `Feed`.

Apart from the pipeline's steps because it is the one place that turns what an upstream
answered into an `Entry` (the API's own usage, else counted with tiktoken; a stream's
chunks kept for replay), whichever flight asked: a plain miss, a streamed one, a regenerate.
Which upstream answers, and its time bound, is the provider's business
(`genai_api.providers.routing`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from genai_api.entry import Entry
from genai_api.errors import GatewayError, ProviderError
from genai_api.flights.fanout import Feed
from genai_api.pipeline.call import Call
from genai_api.providers.base import Provider
from genai_api.savings.tokenizer import TokenCounter
from genai_api.savings.usage import estimate_usage

Upstream = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


class Answering:
    def __init__(self, provider: Provider, upstream: Upstream, tokens: TokenCounter | None) -> None:
        self.provider = provider
        self.upstream = upstream  # `Pipeline.upstream`: one whole call
        self.tokens = tokens  # counts usage the provider did not send

    async def stream(self, call: Call, feed: Feed) -> Entry:
        """One streamed provider call, each chunk appended to `feed` the moment it arrives.

        The feed is closed as soon as the stream is complete (before any store), or with the
        error when it fails, is cut short, or runs past `UPSTREAM_TIMEOUT` in total (the
        provider, `RoutingProvider`, bounds and counts every call).
        """
        try:
            api = call.api
            chunks = self.provider.stream(api.path, api.stream_body(call.body))
            try:
                async for chunk in chunks:
                    feed.append(chunk)
                    if api.finished(chunk):
                        break
            finally:
                aclose = getattr(chunks, "aclose", None)
                if aclose is not None:
                    await aclose()
            response = call.api.assemble(feed.chunks)
        except GatewayError as exc:
            feed.close(exc)
            raise
        except BaseException:
            feed.close(ProviderError("The upstream stream was interrupted.", status_code=502))
            raise
        feed.close()
        return await self._entry(call, response, feed.chunks)

    async def whole(self, call: Call) -> Entry:
        """One provider call for a whole answer, made into its entry."""
        response = await self.upstream(call.api.path, call.body)
        return await self._entry(call, response)

    async def _entry(
        self, call: Call, response: dict[str, Any], chunks: list[dict[str, Any]] | None = None
    ) -> Entry:
        """The entry of a fresh answer, with usage counted by us if the provider sent none."""
        usage = call.api.usage(response)
        if usage is None and self.tokens is not None:
            usage = await estimate_usage(call.api, self.tokens, call.model, call.body, response)
        return Entry.fresh(response, model=call.model.name, usage=usage, chunks=chunks)
