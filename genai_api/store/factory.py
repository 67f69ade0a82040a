"""Builds the configured store; called from the app's lifespan, never at import.

Redis gets its in-process L1 in front (`near.py`) unless `CACHE_L1_MAX_BYTES` or
`CACHE_L1_SECONDS` is 0; the memory backend has none (it is in-process already).
"""

from __future__ import annotations

from genai_api.settings import Settings
from genai_api.store.base import CacheStore
from genai_api.store.memory import MemoryStore
from genai_api.store.near import NearStore
from genai_api.store.near_cache import NearCache
from genai_api.store.redis import RedisStore, redis_options


def build_store(settings: Settings) -> CacheStore:
    if settings.cache_backend == "memory":
        return MemoryStore()
    options = redis_options(
        settings.redis_url.get_secret_value() if settings.redis_url else None,
        host=settings.redis_host,
        port=settings.redis_port,
        password=settings.redis_password.get_secret_value() if settings.redis_password else None,
        db=settings.redis_db,
    )
    redis = RedisStore(
        options,
        timeout=settings.redis_timeout,
        max_connections=settings.redis_max_connections,
        breaker_seconds=settings.redis_breaker_seconds,
        breaker_failures=settings.redis_breaker_failures,
    )
    l1 = NearCache(settings.cache_l1_max_bytes, settings.cache_l1_seconds)
    if not l1.enabled:
        return redis
    return NearStore(redis, l1, f"{settings.cache_namespace}:l1")
