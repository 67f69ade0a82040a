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
from genai_api.models.table import ModelTable
from genai_api.pipeline import Pipeline
from genai_api.prompts import PromptLibrary
from genai_api.providers import Provider, build_provider
from genai_api.providers.metered import MeteredProvider
from genai_api.savings.accounting import Accounting
from genai_api.savings.backends import MemoryStats, StatsBackend
from genai_api.savings.redis import RedisStats
from genai_api.savings.tokenizer import TokenCounter
from genai_api.settings import Settings
from genai_api.store import CacheStore, build_store
from genai_api.store.near import NearStore

log = logging.getLogger("genai_api")


@dataclass
class Gateway:
    settings: Settings
    store: CacheStore
    provider: Provider
    models: ModelTable
    accounting: Accounting
    pipeline: Pipeline
    auth: Authenticator
    tokens: TokenCounter
    metrics: Metrics
    prompts: PromptLibrary

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
        provider = MeteredProvider(
            provider or build_provider(settings, http_client, tokens), metrics
        )
        accounting = Accounting(
            _stats_backend(settings, store), meter=metrics, models=(m.name for m in models)
        )
        pipeline = Pipeline(
            store=store,
            provider=provider,
            accounting=accounting,
            namespace=settings.cache_namespace,
            default_ttl=settings.cache_default_ttl,
            max_ttl=settings.cache_max_ttl,
            cache_nondeterministic=settings.cache_nondeterministic,
            upstream_concurrency=settings.upstream_concurrency,
            upstream_timeout=settings.upstream_timeout,
            stream_finish_on_disconnect=settings.stream_finish_on_disconnect,
            leases=build_leases(settings, store),
            tokens=tokens,
            tagged=settings.cluster,
        )
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
        _log_provider(settings, provider.name)
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
        return cls(
            settings=settings,
            store=store,
            provider=provider,
            models=models,
            accounting=accounting,
            pipeline=pipeline,
            auth=auth,
            tokens=tokens,
            metrics=metrics,
            prompts=prompts,
        )

    async def aclose(self) -> None:
        await self.pipeline.coalescer.aclose()
        await self.pipeline.relay.aclose()
        await self.pipeline.embeddings.aclose()  # its flights release leases as they stop
        await self.pipeline.leases.aclose()
        await self.accounting.aclose()  # the last increments, before the store's pool closes
        await self.provider.aclose()
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
            "upstream with a placeholder key, which only a server that needs none accepts"
        )


def _stats_backend(settings: Settings, store: CacheStore) -> StatsBackend:
    """Shared counters in the cache's Redis (one pool), else this process's memory."""
    client = getattr(store, "client", None)
    if settings.cache_backend == "redis" and client is not None:
        return RedisStats(client, settings.cache_namespace)
    return MemoryStats()
