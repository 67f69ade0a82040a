"""Builds the leases that match the store; called from the app's lifespan, never at import."""

from __future__ import annotations

from genai_api.leases.base import Leases, LocalLeases
from genai_api.leases.redis import RedisLeases
from genai_api.settings import Settings
from genai_api.store.base import CacheStore
from genai_api.store.near import NearStore, redis_of


def build_leases(settings: Settings, store: CacheStore) -> Leases:
    redis = redis_of(store)
    if redis is None:
        return LocalLeases(store)
    return RedisLeases(
        redis,  # the leases' scripts read and write Redis itself, never the L1
        namespace=settings.cache_namespace,
        lease_seconds=settings.lease_seconds,
        # A waiter outlasts any live holder: its call ends within UPSTREAM_TIMEOUT, and a
        # dead holder's lease expires within one lease.
        max_wait=settings.upstream_timeout + settings.lease_seconds,
        near=store if isinstance(store, NearStore) else None,
    )
