"""Builds the configured provider inside the app's lifespan: one upstream per distinct
(base URL, key) of the models table, behind one `RoutingProvider`."""

from __future__ import annotations

from collections.abc import Mapping

import httpx
import openai

from genai_api.metrics import Metrics
from genai_api.models.environ import environment
from genai_api.models.table import ModelTable
from genai_api.providers.aiohttp_client import GatewayAioHttpClient
from genai_api.providers.base import Provider
from genai_api.providers.mock import MockProvider
from genai_api.providers.openai import OpenAIProvider
from genai_api.providers.routing import Failures, Route, RoutingProvider, Upstream
from genai_api.providers.upstreams import UpstreamSpec, plan
from genai_api.savings.tokenizer import TokenCounter
from genai_api.settings import Settings


def build_provider(
    settings: Settings,
    models: ModelTable,
    metrics: Metrics,
    failures: Failures | None = None,
    *,
    provider: Provider | None = None,
    http_client: httpx.AsyncClient | None = None,
    tokens: TokenCounter | None = None,
    environ: Mapping[str, str] | None = None,
) -> RoutingProvider:
    """The routing provider for `settings` and `models`. `provider` replaces the default
    upstream's and `http_client` is its HTTP client (tests inject respx-mocked ones).

    `PROVIDER=mock` makes every upstream the offline mock; with `PROVIDER` unset and no
    `OPENAI_API_KEY`, only the default upstream is (models with an upstream of their own
    still go there: someone who configured a vLLM server means it)."""
    default_spec, specs = plan(models, settings, environment() if environ is None else environ)
    built: dict[int, Upstream] = {}

    def upstream(spec: UpstreamSpec) -> Upstream:
        found = built.get(id(spec))
        if found is None:
            if spec.default:
                inner = provider or _provider(settings, spec, http_client, tokens)
            else:
                inner = _provider(settings, spec, None, tokens)
            found = built[id(spec)] = Upstream(
                spec.name,
                inner,
                settings.upstream_concurrency,
                url=spec.shown_url,
                key_env=spec.key_env,
            )
        return found

    default = upstream(default_spec)
    routes = {
        info.name: Route(upstream(specs.get(info.name, default_spec)), info.upstream_model)
        for info in models
        if info.name in specs or info.upstream_model is not None
    }
    return RoutingProvider(
        default, routes, metrics, timeout=settings.upstream_timeout, failures=failures
    )


def _provider(
    settings: Settings,
    spec: UpstreamSpec,
    http_client: httpx.AsyncClient | None,
    tokens: TokenCounter | None,
) -> Provider:
    mock = settings.provider == "mock" or (spec.default and settings.resolved_provider == "mock")
    if mock:
        return MockProvider(settings.mock_latency_ms, tokens)
    if http_client is None:  # each upstream its own pool: one hanging fills only its own
        limits = httpx.Limits(
            max_connections=settings.upstream_concurrency * 2,
            max_keepalive_connections=settings.upstream_concurrency,
        )
        http_client = (
            GatewayAioHttpClient(limits=limits)
            if settings.upstream_http_client == "aiohttp"
            else openai.DefaultAsyncHttpxClient(limits=limits)
        )
    return OpenAIProvider(
        api_key=spec.key,
        base_url=spec.base_url,
        timeout=settings.upstream_timeout,
        max_retries=settings.upstream_max_retries,
        http_client=http_client,
        isolated=not spec.default,
    )
