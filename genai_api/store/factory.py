"""Builds the configured store; called from the app's lifespan, never at import.

One store interface, three ways to build its Redis (`REDIS_MODE`): one server (`RedisStore`),
a Sentinel-guarded primary (`SentinelStore`: the same store, its client asks the sentinels),
a Redis Cluster (`ClusterStore`: redis-py's `RedisCluster`, a breaker per node). Redis gets
its in-process L1 in front (`near.py`) unless `CACHE_L1_MAX_BYTES` or `CACHE_L1_SECONDS` is
0; the memory backend has none (it is in-process already).
"""

from __future__ import annotations

from genai_api.settings import Settings, addresses
from genai_api.store.backend import RedisBackend
from genai_api.store.base import CacheStore
from genai_api.store.cluster import ClusterStore
from genai_api.store.cluster_client import cluster_client
from genai_api.store.memory import MemoryStore
from genai_api.store.near import NearStore
from genai_api.store.near_cache import NearCache
from genai_api.store.redis import RedisStore, redis_options
from genai_api.store.sentinel import SentinelStore


def build_store(settings: Settings) -> CacheStore:
    if settings.cache_backend == "memory":
        return MemoryStore()
    redis = build_redis(settings)
    l1 = NearCache(settings.cache_l1_max_bytes, settings.cache_l1_seconds)
    if not l1.enabled:
        return redis
    return NearStore(redis, l1, f"{settings.cache_namespace}:l1")


def build_redis(settings: Settings) -> RedisBackend:
    options = redis_options(
        settings.redis_url.get_secret_value() if settings.redis_url else None,
        host=settings.redis_host,
        port=settings.redis_port,
        password=settings.redis_password.get_secret_value() if settings.redis_password else None,
        db=settings.redis_db,
    )
    timeout, connections = settings.redis_timeout, settings.redis_max_connections
    failures = settings.redis_breaker_failures
    if settings.redis_mode == "cluster":
        client = cluster_client(
            options,
            seeds=addresses(settings.redis_cluster_nodes),
            timeout=timeout,
            max_connections=connections,
        )
        return ClusterStore(
            client,
            timeout=timeout,
            max_connections=connections,
            breaker_seconds=settings.redis_breaker_seconds,
            breaker_failures=failures,
        )
    if settings.redis_mode == "sentinel":
        password = settings.redis_sentinel_password
        return SentinelStore(
            options,
            sentinels=addresses(settings.redis_sentinels),
            master=settings.redis_sentinel_master,
            sentinel_password=password.get_secret_value() if password else None,
            timeout=timeout,
            max_connections=connections,
            breaker_seconds=settings.redis_breaker_seconds,
            breaker_failures=failures,
        )
    return RedisStore(
        options,
        timeout=timeout,
        max_connections=connections,
        breaker_seconds=settings.redis_breaker_seconds,
        breaker_failures=failures,
    )
