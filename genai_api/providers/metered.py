"""A `Provider` wrapper that times every call and counts calls in flight (Prometheus).

Wrapping the provider, rather than instrumenting the pipeline, measures every kind of call
(chat, completions, embeddings, streams) in one place.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from genai_api.apis import BY_PATH
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
        with self.metrics.provider_call(_ENDPOINTS.get(path, "other"), body.get("model")):
            async for chunk in self.inner.stream(path, body):
                yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __getattr__(self, name: str) -> Any:
        # Anything else (e.g. MockProvider.calls) is the wrapped provider's.
        return getattr(self.inner, name)
