"""In-process store on aiocache's `SimpleMemoryCache`: the default, per process, no set-up."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from aiocache import SimpleMemoryCache

from genai_api.entry import stored_ttl_ms
from genai_api.store.base import BytesSerializer


class MemoryStore:
    name = "memory"
    last_failure: str | None = None  # it cannot fail
    shards_down: tuple[str, ...] = ()
    full: tuple[str, ...] = ()  # it has no memory limit of its own

    def __init__(self) -> None:
        # timeout=None: a dict lookup needs no asyncio.wait_for around it.
        self._cache = SimpleMemoryCache(serializer=BytesSerializer(), timeout=None)

    async def get(self, key: str, *, slide_ms: int = 0) -> bytes | None:
        value: bytes | None = await self._cache.get(key)
        if value is not None and slide_ms:
            full = stored_ttl_ms(value)
            if full is not None:
                # `_expire`, not `expire`: the public method's decorators (timeout, plugins)
                # cost a hit ~4 µs more than the expiry itself (aiocache is pinned).
                await self._cache._expire(key, min(full, slide_ms) / 1000)
        return value

    async def get_many(self, keys: Sequence[str], *, extend_ms: int = 0) -> list[bytes | None]:
        values: list[bytes | None] = await self._cache.multi_get(list(keys))
        if extend_ms:
            for key, value in zip(keys, values, strict=True):
                if value is not None:
                    await self._cache._expire(key, extend_ms / 1000)
        return values

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self._cache.set(key, value, ttl=ttl)

    async def set_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        for key, value, ttl in items:
            await self._cache.set(key, value, ttl=ttl)

    async def delete_matching(self, pattern: str) -> int:
        keys = [k for k in list(self._cache._cache) if fnmatch.fnmatchcase(k, pattern)]
        for key in keys:
            await self._cache.delete(key)
        return len(keys)

    async def ping(self) -> bool:
        return True

    async def warm(self) -> None:
        return None

    async def close(self) -> None:
        await self._cache.close()
