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
- times the call and counts it in flight, labelled by endpoint, public model and upstream.

    provider = RoutingProvider(default, {"llama-3.1-8b": Route(vllm, "meta-llama/...")}, metrics)
    await provider.create("/chat/completions", {"model": "llama-3.1-8b", ...})
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from genai_api.apis import BY_PATH, Api
from genai_api.errors import GatewayError
from genai_api.metrics import Metrics
from genai_api.models.catalog import Lister
from genai_api.providers.base import Provider

_ENDPOINTS = {path: api.name for path, api in BY_PATH.items()} | {"/embeddings": "embeddings"}


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
    def __init__(self, default: Upstream, routes: dict[str, Route], metrics: Metrics) -> None:
        self.default = default
        self.routes = routes
        self.metrics = metrics
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
        async with upstream.slots:
            with self.metrics.provider_call(_ENDPOINTS.get(path, "other"), model, upstream.name):
                answer = await upstream.provider.create(path, body)
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
        async with upstream.slots:
            with self.metrics.provider_call(_ENDPOINTS.get(path, "other"), model, upstream.name):
                chunks = upstream.provider.stream(path, body)
                try:
                    async for chunk in chunks:
                        if rename:
                            _rename(chunk, model)
                        last = api is not None and _ends(api, chunk)
                        yield chunk
                except GeneratorExit:
                    # Closed by its reader: after an API's last event (Responses' completed
                    # event: the pipeline reads no further) the call succeeded, else not.
                    if not last:
                        raise
                finally:
                    aclose = getattr(chunks, "aclose", None)
                    if aclose is not None:
                        await aclose()  # the upstream response, released now

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
