"""Concurrent lookups of one key share a single store read.

A burst of identical requests arriving together would otherwise send one read each, and the
first request's read (then its flight's claim) would queue behind the 49 others' replies.
The first request asks the store; the others wait for its bytes and each decodes them and
judges them against its own max-age. If the first one's read is cancelled (its client went
away) the others read for themselves. A failed read fails them all: one Redis error, as if
each had tried.
"""

from __future__ import annotations

import asyncio

from genai_api.errors import CacheUnavailable
from genai_api.store.base import CacheStore


class _ReadAbandoned(Exception):
    """The lookup a request waited on was cancelled: it reads for itself."""


class SharedReads:
    def __init__(self, store: CacheStore) -> None:
        self.store = store
        self.pending: dict[str, list[asyncio.Future[bytes | None]]] = {}  # lookups under way

    async def get(self, skey: str, slide_ms: int = 0) -> bytes | None:
        """`store.get(skey)`, shared by the requests that ask while it runs (requests for
        one key are for one model: the same `slide_ms`)."""
        waiters = self.pending.get(skey)
        if waiters is not None:
            waiter: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
            waiters.append(waiter)
            try:
                return await waiter
            except _ReadAbandoned:
                return await self._read(skey, slide_ms)
        waiters = self.pending[skey] = []
        try:
            raw = await self._read(skey, slide_ms)
        except BaseException as exc:
            shared: BaseException = exc if isinstance(exc, CacheUnavailable) else _ReadAbandoned()
            for waiter in self._close(skey, waiters):
                waiter.set_exception(shared)
            raise
        for waiter in self._close(skey, waiters):
            waiter.set_result(raw)
        return raw

    async def _read(self, skey: str, slide_ms: int) -> bytes | None:
        # The keyword only when it says something: stores (and test doubles) of the plain
        # `get(key)` shape keep working for models without sliding expiration.
        if slide_ms:
            return await self.store.get(skey, slide_ms=slide_ms)
        return await self.store.get(skey)

    def _close(
        self, skey: str, waiters: list[asyncio.Future[bytes | None]]
    ) -> list[asyncio.Future[bytes | None]]:
        """Forget the lookup of `skey`; its waiters still waiting."""
        if self.pending.get(skey) is waiters:
            del self.pending[skey]
        return [waiter for waiter in waiters if not waiter.done()]
