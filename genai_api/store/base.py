"""The cache store protocol: bytes in, bytes out, TTL in seconds.

Stores raise `CacheUnavailable` when their backend fails; callers fail open. Keys are full
storage keys (namespace included), built by `genai_api.keys.storage_key`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from aiocache.serializers import BaseSerializer


class CacheStore(Protocol):
    name: str

    @property
    def shards_down(self) -> tuple[str, ...]:
        """Parts of the backend that did not answer the last `ping` while others did (the
        primaries of a Redis Cluster); empty otherwise."""
        ...

    @property
    def full(self) -> tuple[str, ...]:
        """Parts of the backend that refused a write for want of memory lately (Redis at
        `maxmemory`): the store's name on one server, the primaries of a Redis Cluster;
        reads go on there (`genai_api.store.refusals`). Empty otherwise."""
        ...

    async def get(self, key: str, *, slide_ms: int = 0) -> bytes | None:
        """The stored bytes; with `slide_ms`, the entry's TTL is set back to the one it was
        stored with (`genai_api.entry.stored_ttl_ms`), at most `slide_ms`, in the same step."""
        ...

    async def get_many(self, keys: Sequence[str], *, extend_ms: int = 0) -> list[bytes | None]:
        """The stored bytes of each key; with `extend_ms`, each entry found gets that TTL in
        the same step (embedding entries carry no TTL of their own to restore)."""
        ...

    async def set(self, key: str, value: bytes, ttl: float) -> None: ...

    async def set_many(self, items: Sequence[tuple[str, bytes, float]]) -> None: ...

    async def delete_matching(self, pattern: str) -> int:
        """Delete every key matching a glob `pattern` without blocking the backend."""
        ...

    async def ping(self) -> bool: ...

    @property
    def last_failure(self) -> str | None:
        """Why the last `ping` failed, as the backend said it (None after a success)."""
        ...

    async def warm(self) -> None:
        """Open connections ahead of traffic (start-up, after a successful ping)."""
        ...

    async def close(self) -> None: ...


class BytesSerializer(BaseSerializer):  # type: ignore[misc]
    """aiocache serializer that leaves values as bytes: entries are already JSON."""

    DEFAULT_ENCODING = None

    def dumps(self, value: bytes) -> bytes:
        return value

    def loads(self, value: bytes | None) -> bytes | None:
        return value
