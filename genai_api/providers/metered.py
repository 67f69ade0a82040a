"""A `Provider` wrapper that times every call and counts calls in flight (Prometheus).

Wrapping the provider, rather than instrumenting the pipeline, measures every kind of call
(chat, completions, embeddings, streams) in one place.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from genai_api.apis import BY_PATH, Api
from genai_api.errors import GatewayError
from genai_api.metrics import Metrics
from genai_api.providers.base import Provider

_ENDPOINTS = {path: api.name for path, api in BY_PATH.items()} | {"/embeddings": "embeddings"}


class MeteredProvider:
    def __init__(self, inner: Provider, metrics: Metrics) -> None:
        self.inner = inner
        self.name = inner.name
        self.metrics = metrics

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.metrics.provider_call(_ENDPOINTS.get(path, "other"), body.get("model")):
            return await self.inner.create(path, body)

    async def stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        api = BY_PATH.get(path)
        last = False
        chunks = self.inner.stream(path, body)
        with self.metrics.provider_call(_ENDPOINTS.get(path, "other"), body.get("model")):
            try:
                async for chunk in chunks:
                    last = api is not None and _ends(api, chunk)
                    yield chunk
            except GeneratorExit:
                # Closed by its reader: after an API's last event (Responses' completed
                # event: the pipeline reads no further) the call succeeded, else it did not.
                if not last:
                    raise
            finally:
                aclose = getattr(chunks, "aclose", None)
                if aclose is not None:
                    await aclose()  # the upstream response, released now

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __getattr__(self, name: str) -> Any:
        # Anything else (e.g. MockProvider.calls) is the wrapped provider's.
        return getattr(self.inner, name)


def _ends(api: Api, chunk: dict[str, Any]) -> bool:
    """Whether `chunk` is the event that ends a successful stream of `api`."""
    try:
        return api.finished(chunk)
    except GatewayError:  # a failure event: its reader raises it
        return False
