"""The `Provider` every call goes through: timed, bounded by `UPSTREAM_TIMEOUT`, failures counted.

Wrapping the provider, rather than instrumenting the pipeline, sees every kind of call (chat,
completions, embeddings chunks, streams, a fleet holder's call and a bypass alike) in one
place. A failed call raises a `ProviderError` here and nowhere else:

- an error answer (a status, an error event in a stream, an answer that is not JSON): `error`;
- no answer within `UPSTREAM_TIMEOUT` (the whole call, a stream until its last chunk):
  `timeout`, raised as `ProviderTimeout` (504);
- a provider that cannot be reached: `unreachable`;
- an answer or stream cut (the connection broke) or ended before it finished: `cut`.

Each is counted once: `provider_errors` in the stats (`Failures`, the savings recorder) and
`genai_provider_errors_total{reason}` in `/metrics`. A call cancelled by the gateway itself
(its clients gone, shutdown) is not a provider failure and is not counted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Protocol

from genai_api.errors import AnswerCut, ProviderError, ProviderTimeout, ProviderUnreachable
from genai_api.metrics import Metrics
from genai_api.providers.base import Provider
from genai_api.streams import IncompleteStream

_ENDPOINTS = {
    "/chat/completions": "chat.completions",
    "/completions": "completions",
    "/embeddings": "embeddings",
}


class Failures(Protocol):
    """Where failed calls are counted (`genai_api.savings.accounting.Accounting`)."""

    def record_provider_error(self, endpoint: str, model: object, reason: str) -> None: ...


def reason_of(error: ProviderError) -> str:
    if isinstance(error, ProviderTimeout):
        return "timeout"
    if isinstance(error, ProviderUnreachable):
        return "unreachable"
    if isinstance(error, IncompleteStream | AnswerCut):
        return "cut"
    return "error"


class MeteredProvider:
    def __init__(
        self, inner: Provider, metrics: Metrics, failures: Failures, *, timeout: float
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.metrics = metrics
        self.failures = failures
        self.timeout = timeout

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        endpoint, model = _ENDPOINTS.get(path, "other"), body.get("model")
        with self.metrics.provider_call(endpoint, model):
            try:
                try:
                    async with asyncio.timeout(self.timeout):
                        return await self.inner.create(path, body)
                except TimeoutError as exc:
                    raise ProviderTimeout() from exc
            except ProviderError as exc:
                self.failures.record_provider_error(endpoint, model, reason_of(exc))
                raise

    async def stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The inner stream's chunks; the deadline covers the whole stream, and is only ever
        armed around the inner stream's own waits (never across a `yield`, where the caller
        runs), so it can only interrupt the provider call."""
        endpoint, model = _ENDPOINTS.get(path, "other"), body.get("model")
        deadline = asyncio.get_running_loop().time() + self.timeout
        with self.metrics.provider_call(endpoint, model):
            chunks = self.inner.stream(path, body)
            try:
                while True:
                    try:
                        async with asyncio.timeout_at(deadline):
                            chunk = await anext(chunks)
                    except StopAsyncIteration:
                        return
                    except TimeoutError as exc:
                        raise ProviderTimeout() from exc
                    yield chunk
            except ProviderError as exc:
                self.failures.record_provider_error(endpoint, model, reason_of(exc))
                raise
            finally:
                aclose = getattr(chunks, "aclose", None)  # the connection goes back at once
                if aclose is not None:
                    await aclose()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __getattr__(self, name: str) -> Any:
        # Anything else (e.g. MockProvider.calls) is the wrapped provider's.
        return getattr(self.inner, name)
