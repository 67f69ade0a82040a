"""Everything a running gateway holds, built once in the app's lifespan and kept on app.state.

Nothing with a connection exists before `Gateway.start`, so importing the package is free
and tests build gateways with their own settings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx

from genai_api.http.auth import Authenticator
from genai_api.leases import build_leases
from genai_api.metrics import Metrics
from genai_api.models.catalog import Catalog
from genai_api.models.table import ModelTable
from genai_api.passthrough import Passthrough
from genai_api.passthrough.upstream import build_upstream
from genai_api.pipeline.core import Pipeline
from genai_api.pipeline.fallbacks import Fallbacks
from genai_api.pipeline.variants import Variants
from genai_api.prompts import PromptLibrary
from genai_api.providers import Provider, build_provider
from genai_api.providers.routing import RoutingProvider
from genai_api.savings.accounting import Accounting
from genai_api.savings.backends import MemoryStats, StatsBackend
from genai_api.savings.redis import RedisStats
from genai_api.savings.tokenizer import TokenCounter
from genai_api.semantic import build as semantic
from genai_api.settings import Settings
from genai_api.store import CacheStore, build_store
from genai_api.store.near import NearStore, redis_of
from genai_api.tenancy import Tenancy

log = logging.getLogger("genai_api")


@dataclass
class Gateway:
    settings: Settings
    store: CacheStore
    provider: RoutingProvider
    models: ModelTable
    catalog: Catalog
    accounting: Accounting
    pipeline: Pipeline
    auth: Authenticator
    tokens: TokenCounter
    metrics: Metrics
    prompts: PromptLibrary
    tenancy: Tenancy
    passthrough: Passthrough

    @classmethod
    async def start(
        cls,
        settings: Settings,
        *,
        provider: Provider | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> Gateway:
        models = ModelTable.load(settings.models_file)
        prompts = PromptLibrary.load(settings.prompts_dir)  # a bad file stops start-up
        tokens = TokenCounter.load()  # packaged encodings: no network, fails at start-up
        metrics = Metrics(m.name for m in models)
        store = build_store(settings)
        redis = redis_of(store)
        if redis is not None:
            redis.refusals.listener = metrics.refused_write
        accounting = Accounting(
            _stats_backend(settings, store), meter=metrics, models=(m.name for m in models)
        )
        routing = build_provider(
            settings,
            models,
            metrics,
            accounting,
            provider=provider,
            http_client=http_client,
            tokens=tokens,
        )
        catalog = Catalog(
            models,
            {upstream.name: upstream.lister for upstream in routing.upstreams},
            lambda name: _where(routing, name),
            default=routing.default.name,
        )
        pipeline = Pipeline(
            store=store,
            provider=routing,
            accounting=accounting,
            namespace=settings.cache_namespace,
            default_ttl=settings.cache_default_ttl,
            max_ttl=settings.cache_max_ttl,
            cache_nondeterministic=settings.cache_nondeterministic,
            upstream_timeout=settings.upstream_timeout,
            stream_finish_on_disconnect=settings.stream_finish_on_disconnect,
            leases=build_leases(settings, store),
            tokens=tokens,
            variants=Variants(
                store,
                settings.cache_namespace,
                most=settings.cache_variants,
                window=settings.cache_regenerate_seconds,
                shared=settings.cache_backend == "redis",
            ),
            fallbacks=Fallbacks(models.get, settings.upstream_timeout, metrics.fallback),
            tagged=settings.cluster,
        )
        pipeline.semantic = await semantic.build(settings, models, pipeline)
        pipeline.leases.start()
        if isinstance(store, NearStore):
            store.start()  # the L1's invalidation subscription
        auth = Authenticator(
            settings.client_keys,
            settings.admin_api_key.get_secret_value() if settings.admin_api_key else None,
            scope=settings.cache_scope,
            secret=(
                settings.tenant_hash_secret.get_secret_value()
                if settings.tenant_hash_secret
                else None
            ),
        )
        tenancy = Tenancy.build(settings, store)
        passthrough = Passthrough(
            build_upstream(settings), tenancy, max_json_bytes=settings.max_request_bytes
        )
        _log_provider(settings, routing.name)
        _log_upstreams(routing)
        _log_tenancy(settings, tenancy)
        log.info(
            "cache: %s, namespace %r, scope %s",
            store.name,
            settings.cache_namespace,
            settings.cache_scope,
        )
        if settings.redis_mode != "standalone" and settings.cache_backend != "redis":
            log.warning(
                "REDIS_MODE=%s has no effect: CACHE_BACKEND is %s",
                settings.redis_mode,
                settings.cache_backend,
            )
        if settings.prompts_dir.is_dir():
            log.info("prompts: %d template(s) from %s", len(prompts), settings.prompts_dir)
        else:  # a typo in PROMPTS_DIR, or serving from another directory than the templates'
            log.warning("prompts: none - PROMPTS_DIR %s is not a directory", settings.prompts_dir)
        if await store.ping():
            await store.warm()
        else:
            log.warning(
                "cache backend %s is not answering (%s); requests will bypass it",
                store.name,
                store.last_failure or "no reason given",
            )
        accounting.start()
        catalog.start()
        return cls(
            settings=settings,
            store=store,
            provider=routing,
            models=models,
            catalog=catalog,
            accounting=accounting,
            pipeline=pipeline,
            auth=auth,
            tokens=tokens,
            metrics=metrics,
            prompts=prompts,
            tenancy=tenancy,
            passthrough=passthrough,
        )

    async def aclose(self) -> None:
        await self.catalog.aclose()
        await self.pipeline.coalescer.aclose()
        await self.pipeline.relay.aclose()
        await self.pipeline.embeddings.aclose()  # its flights release leases as they stop
        await self.pipeline.leases.aclose()
        await self.pipeline.variants.aclose()  # the last records, before the store closes
        if self.pipeline.semantic is not None:
            await self.pipeline.semantic.aclose()  # its index writes, before the store closes
        await self.accounting.aclose()  # the last increments, before the store's pool closes
        await self.provider.aclose()
        await self.passthrough.aclose()
        await self.tenancy.aclose()  # owner records a full Redis refused, before the store closes
        await self.store.close()
        self.metrics.close()


def _log_provider(settings: Settings, name: str) -> None:
    """Which provider answers, and why: the operator may not have meant it (CONTRACT §1)."""
    if name == "mock":
        why = "chosen by PROVIDER" if settings.provider == "mock" else "no OPENAI_API_KEY set"
        log.warning("provider: mock (offline, deterministic answers) - %s", why)
        return
    log.info("provider: openai at %s", settings.openai_base_url or "api.openai.com")
    if not settings.openai_api_key:
        # Not refused: an OpenAI-compatible server (vLLM, Ollama) may want no key at all.
        log.warning(
            "provider: openai chosen by PROVIDER, but no OPENAI_API_KEY is set: requests go "
            "upstream without a key, which only a server that needs none accepts"
        )


def _log_tenancy(settings: Settings, tenancy: Tenancy) -> None:
    """Whether upstream objects are kept apart per tenant (CONTRACT §3), and where."""
    if not tenancy.enforced:
        return
    where = tenancy.records.name if tenancy.records is not None else "nowhere"
    log.info("tenancy: upstream objects are kept apart per client key (records: %s)", where)
    if where == "memory":
        log.warning(
            "tenancy: object owners are recorded in this process only (CACHE_BACKEND=memory): "
            "with --workers N or several replicas a tenant's object is a 404 on the others; "
            "use CACHE_BACKEND=redis"
        )


def _log_upstreams(routing: RoutingProvider) -> None:
    """Each upstream once, when the models file names more than the default: where it is
    (no credentials), which key variable it is sent, and which models go there."""
    if len(routing.upstreams) == 1 and not routing.routes:
        return
    served: dict[str, list[str]] = {upstream.name: [] for upstream in routing.upstreams}
    for model, route in routing.routes.items():
        served[route.upstream.name].append(model)
    for upstream in routing.upstreams:
        models = served[upstream.name]
        if upstream is routing.default:
            models = ["every other model", *models]
        # No "NAME_API_KEY: value" shape: the log's redaction would mask what follows it.
        log.info(
            "upstream %s: %s at %s (%s) for %s",
            upstream.name,
            upstream.provider.name,
            upstream.url,
            upstream.key_note,
            ", ".join(models),
        )


def _where(routing: RoutingProvider, model: str) -> tuple[str, str]:
    route = routing.upstream_of(model)
    return route.upstream.name, route.wire or model


def _stats_backend(settings: Settings, store: CacheStore) -> StatsBackend:
    """Shared counters in the cache's Redis (one pool), else this process's memory."""
    client = getattr(store, "client", None)
    if settings.cache_backend == "redis" and client is not None:
        return RedisStats(client, settings.cache_namespace)
    return MemoryStats()
