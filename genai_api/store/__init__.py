"""Cache stores: one small protocol (`CacheStore`), a memory and a Redis implementation."""

from genai_api.store.base import CacheStore
from genai_api.store.factory import build_store

__all__ = ["CacheStore", "build_store"]
