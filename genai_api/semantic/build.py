"""Builds the semantic layer when a model opts in, and checks its server at start-up.

Which server: `SEMANTIC_REDIS_URL`, else the cache's own Redis. A server that answers but
has no query engine is a configuration error naming the setting (exit 2 from `serve`),
never a silent no-op; one that does not answer at start-up is a warning, and semantic
lookups are misses until it does (the cache fails open).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import numpy as np
import redis
from redis.asyncio.connection import parse_url
from redis.exceptions import RedisError, ResponseError

from genai_api.controls import DEFAULT_CONTROLS
from genai_api.embeddings.runner import EmbeddingBatch, EmbeddingOutcome
from genai_api.embeddings.upstream import Item
from genai_api.errors import ConfigError
from genai_api.logs import redact
from genai_api.models.table import ModelInfo, ModelTable
from genai_api.semantic.index import SearchMissing, VectorIndex
from genai_api.semantic.layer import SemanticCache
from genai_api.settings import Settings
from genai_api.store.base import CacheStore
from genai_api.store.redis import redis_options

log = logging.getLogger("genai_api.semantic")
TIMEOUT = 2.0  # seconds per index command: an embedding call costs more than this anyway


class Embedder(Protocol):
    """The pipeline's embeddings path (`Pipeline.prepare_embeddings`, `run_embeddings`)."""

    store: CacheStore

    async def prepare_embeddings(
        self,
        body: dict[str, Any],
        items: list[Item],
        *,
        model: ModelInfo,
        tenant: str,
        controls: Any,
        encoding: Any,
    ) -> EmbeddingBatch: ...

    async def run_embeddings(self, batch: EmbeddingBatch) -> EmbeddingOutcome: ...


def server(settings: Settings, models: ModelTable) -> tuple[str, dict[str, Any]] | None:
    """(the setting that names it, connection options) of the index's server; None when no
    model opts in. Raises `ConfigError` when one does and there is no Redis to use."""
    opted = models.semantic
    if not opted:
        return None
    if settings.semantic_redis_url is not None and settings.semantic_redis_url.get_secret_value():
        return "SEMANTIC_REDIS_URL", dict(parse_url(settings.semantic_redis_url.get_secret_value()))
    if settings.cache_backend == "redis" and settings.redis_mode != "standalone":
        # A cluster's FT.* indexes are per node (and a Sentinel's primary moves): the index
        # needs a server of its own, named.
        raise ConfigError(
            f"SEMANTIC_REDIS_URL: must name a Redis with the query engine: model "
            f"{opted[0].name!r} opts in to semantic caching, and REDIS_MODE="
            f"{settings.redis_mode} cannot hold the index"
        )
    if settings.cache_backend == "redis":
        name = "REDIS_URL" if settings.redis_url else "REDIS_HOST"
        url = settings.redis_url.get_secret_value() if settings.redis_url else None
        password = settings.redis_password.get_secret_value() if settings.redis_password else None
        options = redis_options(
            url,
            host=settings.redis_host,
            port=settings.redis_port,
            password=password,
            db=settings.redis_db,
        )
        return name, options
    raise ConfigError(
        f"SEMANTIC_REDIS_URL: must name a Redis with the query engine: model "
        f"{opted[0].name!r} opts in to semantic caching, and CACHE_BACKEND=memory has none"
    )


def _missing(name: str, exc: BaseException) -> ConfigError:
    return ConfigError(
        f"{name}: the server has no query engine ({redact(str(exc))}); semantic caching "
        "needs Redis 8, Redis Stack or Valkey with the search module"
    )


def check_server(settings: Settings, models: ModelTable) -> None:
    """At start-up, in the command's own process: a server without FT.* is a ConfigError."""
    found = server(settings, models)
    if found is None:
        return
    name, options = found
    client = redis.Redis(**options, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    try:
        client.execute_command("FT._LIST")  # type: ignore[no-untyped-call]
    except ResponseError as exc:
        raise _missing(name, exc) from None
    except (RedisError, OSError) as exc:
        log.warning("semantic index server (%s) not answering: %s", name, redact(str(exc)))
    finally:
        client.close()


async def build(settings: Settings, models: ModelTable, pipeline: Embedder) -> SemanticCache | None:
    """The layer, when a model opts in (raises `ConfigError` like `check_server`)."""
    found = server(settings, models)
    if found is None:
        return None
    name, options = found
    index = VectorIndex.connect(options, settings.cache_namespace, timeout=TIMEOUT)
    try:
        await index.check()
    except SearchMissing as exc:
        await index.aclose()
        raise _missing(name, exc) from None
    except (RedisError, OSError) as exc:
        log.warning("semantic index server (%s) not answering: %s", name, redact(str(exc)))

    async def embed(model: str, text: str, tenant: str) -> list[float]:
        """One input through the gateway's own embeddings path: cached, coalesced, counted."""
        body: dict[str, Any] = {"model": model, "input": [text]}
        batch = await pipeline.prepare_embeddings(
            body,
            [text],
            model=models.get(model),
            tenant=tenant,
            controls=DEFAULT_CONTROLS,
            encoding=None,
        )
        outcome = await pipeline.run_embeddings(batch)
        return [float(x) for x in np.frombuffer(outcome.vectors[0], dtype="<f4")]

    names = ", ".join(m.name for m in models.semantic)
    log.info("semantic cache: on for %s (index on %s)", names, name)
    return SemanticCache(index, pipeline.store, embed)
