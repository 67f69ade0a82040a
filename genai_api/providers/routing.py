"""The provider the pipeline calls: each model's call goes to its own upstream.

Built once at start-up (`genai_api.providers.factory.build_provider`), behind the same
`Provider` protocol as a single upstream, so nothing above it knows there may be several.
Per call it picks the upstream by the body's `model` (the public name: a models-file entry
with an upstream of its own, else the default one), and:

- sends the entry's `upstream_model` instead of the public name, and puts the public name
  back in the answer's `model` (and in each streamed event's), so clients, the cache and the
  stats only ever see the name they asked for;
- waits for one of that upstream's `UPSTREAM_CONCURRENCY` slots: each upstream has its own,
  and its own connection pool, so a hung upstream fills its own slots and no other's;
- bounds the call by `UPSTREAM_TIMEOUT` (the wait for a slot included; a stream until its
  last chunk, never across a `yield`, where its reader runs), raised as `ProviderTimeout`;
- times the call and counts it in flight, labelled by endpoint, public model and upstream;
- counts a failed call once, by reason (`provider_errors` in the stats, through `failures`,
  and `genai_provider_errors_total{reason}`): an error answer or event (`error`), no answer
  in time (`timeout`), an upstream it cannot reach (`unreachable`), an answer or stream that
  broke off or ended unfinished (`cut`). A call the gateway cancels itself (its clients
  gone, shutdown) is not the provider's failure and is not counted.

    provider = RoutingProvider(default, {"llama-3.1-8b": Route(vllm, "meta-llama/...")}, metrics)
    await provider.create("/chat/completions", {"model": "llama-3.1-8b", ...})
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from genai_api.apis import BY_PATH, Api
from genai_api.errors import (
    AnswerCut,
    GatewayError,
    IncompleteStream,
    ProviderError,
    ProviderTimeout,
    ProviderUnreachable,
)
from genai_api.metrics import Metrics
from genai_api.models.catalog import Lister
from genai_api.providers.base import Provider

_ENDPOINTS = {path: api.name for path, api in BY_PATH.items()} | {"/embeddings": "embeddings"}


class Failures(Protocol):
    """Where failed calls are counted (`genai_api.savings.accounting.Accounting`)."""

    def record_provider_error(self, endpoint: str, model: object, reason: str) -> None: ...


def reason_of(error: ProviderError) -> str:
    """The `reason` label of a failed call."""
    if isinstance(error, ProviderTimeout):
        return "timeout"
    if isinstance(error, ProviderUnreachable):
        return "unreachable"
    if isinstance(error, IncompleteStream | AnswerCut):
        return "cut"
    return "error"


class Upstream:
    """One upstream: its provider (its own connection pool), its slots, its metrics name."""

    def __init__(
        self,
        name: str,
        provider: Provider,
        concurrency: int,
        *,
        url: str = "",
        key_env: str | None = None,
    ) -> None:
        self.name = name
        self.provider = provider
        self.url = url  # without credentials, for the log
        self.key_env = key_env  # the variable its key came from (never the key)
        self.slots = asyncio.Semaphore(concurrency)

    @property
    def key_note(self) -> str:
        return f"key from {self.key_env}" if self.key_env else "no key"

    @property
    def lister(self) -> Lister | None:
        """How to ask it which models it serves (None: it cannot say, e.g. the mock)."""
        return self.provider if callable(getattr(self.provider, "list_models", None)) else None  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Route:
    upstream: Upstream
    wire: str | None  # `upstream_model`: the name sent instead of the public one


class RoutingProvider:
    def __init__(
        self,
        default: Upstream,
        routes: dict[str, Route],
        metrics: Metrics,
        *,
        timeout: float = 120.0,
        failures: Failures | None = None,
    ) -> None:
        self.default = default
        self.routes = routes
        self.metrics = metrics
        self.timeout = timeout  # UPSTREAM_TIMEOUT, per call
        self.failures = failures
        self.name = default.provider.name
        upstreams = {id(default): default} | {id(r.upstream): r.upstream for r in routes.values()}
        self.upstreams = list(upstreams.values())  # each once, the default first

    def upstream_of(self, model: str) -> Route:
        """Where calls for `model` go (the default upstream, under its own name, when it has
        no route of its own)."""
        return self.routes.get(model) or Route(self.default, None)

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        model = body.get("model")
        route = self.routes.get(model) if self.routes and isinstance(model, str) else None
        upstream = self.default if route is None else route.upstream
        if route is not None and route.wire is not None:
            body = {**body, "model": route.wire}
        endpoint = _ENDPOINTS.get(path, "other")
        try:
            try:
                async with asyncio.timeout(self.timeout), upstream.slots:
                    with self.metrics.provider_call(endpoint, model, upstream.name):
                        answer = await upstream.provider.create(path, body)
            except TimeoutError as exc:
                raise ProviderTimeout() from exc
        except ProviderError as exc:
            self._failed(endpoint, model, exc)
            raise
        if route is not None and route.wire is not None:
            _rename(answer, model)
        return answer

    async def stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        model = body.get("model")
        route = self.routes.get(model) if self.routes and isinstance(model, str) else None
        upstream = self.default if route is None else route.upstream
        rename = route is not None and route.wire is not None
        if rename:
            body = {**body, "model": route.wire}  # type: ignore[union-attr]
        api, last = BY_PATH.get(path), False
        endpoint = _ENDPOINTS.get(path, "other")
        deadline = asyncio.get_running_loop().time() + self.timeout
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    await upstream.slots.acquire()
            except TimeoutError as exc:
                raise ProviderTimeout() from exc
            try:
                with self.metrics.provider_call(endpoint, model, upstream.name):
                    chunks = upstream.provider.stream(path, body)
                    try:
                        while True:
                            try:
                                async with asyncio.timeout_at(deadline):
                                    chunk = await anext(chunks)
                            except StopAsyncIteration:
                                return
                            except TimeoutError as exc:
                                raise ProviderTimeout() from exc
                            if rename:
                                _rename(chunk, model)
                            last = api is not None and _ends(api, chunk)
                            yield chunk
                    except GeneratorExit:
                        # Closed by its reader: after an API's last event (Responses'
                        # completed event: the pipeline reads no further) the call
                        # succeeded, else not.
                        if not last:
                            raise
                    finally:
                        aclose = getattr(chunks, "aclose", None)
                        if aclose is not None:
                            await aclose()  # the upstream response, released now
            finally:
                upstream.slots.release()
        except ProviderError as exc:
            self._failed(endpoint, model, exc)
            raise

    def _failed(self, endpoint: str, model: object, error: ProviderError) -> None:
        if self.failures is not None:
            self.failures.record_provider_error(endpoint, model, reason_of(error))

    async def aclose(self) -> None:
        for upstream in self.upstreams:
            await upstream.provider.aclose()

    def __getattr__(self, name: str) -> Any:
        # Anything else (e.g. MockProvider.calls) is the default upstream's provider's.
        return getattr(self.default.provider, name)


def _ends(api: Api, chunk: dict[str, Any]) -> bool:
    """Whether `chunk` is the event that ends a successful stream of `api`."""
    try:
        return api.finished(chunk)
    except GatewayError:  # a failure event: its reader raises it
        return False


def _rename(answer: dict[str, Any], public: object) -> None:
    """The public name where the upstream wrote its own: the answer's (or event's) `model`,
    and a Responses event's `response.model`."""
    if "model" in answer:
        answer["model"] = public
    inner = answer.get("response")
    if isinstance(inner, dict) and "model" in inner:
        inner["model"] = public
