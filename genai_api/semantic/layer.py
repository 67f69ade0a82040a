"""The semantic cache: a layer behind the exact cache, for models that opted in.

The pipeline calls it at two points, both off the exact-hit path:

- `lookup`, on an exact miss of an eligible request (`scope.query_of`): the last user
  message is embedded through the gateway's own embeddings path (so the vector is cached
  and counted like any embedding), the index returns the nearest entries of the same scope,
  and the first whose similarity reaches the model's threshold and that the lexical guard
  (`guard.compatible`) finds no difference with is read from the store and served;
- `remember`, once a miss's entry is stored: its vector goes into the index with the
  entry's TTL, in the background (the answer does not wait for it).

It fails open: an embedding that cannot be had, or a search server that does not answer,
is a miss, logged, never an error to the client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.exceptions import RedisError

from genai_api.entry import Entry
from genai_api.errors import CacheUnavailable, GatewayError
from genai_api.semantic.config import SemanticConfig
from genai_api.semantic.guard import compatible, features
from genai_api.semantic.index import Candidate, VectorIndex
from genai_api.semantic.scope import Query, query_of
from genai_api.store.base import CacheStore

log = logging.getLogger("genai_api.semantic")

Embed = Callable[[str, str, str], Awaitable[list[float]]]  # (model, text, tenant) -> vector
_FAILURES = (RedisError, OSError, TimeoutError, CacheUnavailable, GatewayError)
NEIGHBOURS = 4  # candidates looked at per lookup: the nearest may be refused by the guard


@dataclass(slots=True)
class Pending:
    """An eligible request's query, and its vector once computed (reused by `remember`)."""

    query: Query
    config: SemanticConfig
    tenant: str
    model: str
    prompt: str | None
    vector: list[float] | None = None


@dataclass(frozen=True, slots=True)
class Match:
    entry: Entry
    candidate: Candidate | None  # None: the exact entry itself (read before the search)


class SemanticCache:
    def __init__(self, index: VectorIndex, store: CacheStore, embed: Embed) -> None:
        self.index = index
        self.store = store
        self.embed = embed
        self._tasks: set[asyncio.Task[None]] = set()

    def pending(
        self,
        config: SemanticConfig,
        api_name: str,
        key_body: dict[str, object],
        *,
        tenant: str,
        model: str,
        prompt: str | None,
    ) -> Pending | None:
        """What to look up and remember for a request, or None when it is not eligible."""
        query = query_of(api_name, key_body, tenant)
        return None if query is None else Pending(query, config, tenant, model, prompt)

    async def lookup(
        self, pending: Pending, usable: Callable[[bytes], Entry | None]
    ) -> Match | None:
        """The entry to serve by meaning, or None (a miss)."""
        try:
            pending.vector = await self._vector(pending)
            found = await self.index.nearest(
                pending.vector, scope=pending.query.scope, k=NEIGHBOURS
            )
            asked = features(pending.query.text)
            for candidate in found:
                if candidate.similarity < pending.config.threshold:
                    break  # most similar first: none after it qualifies
                why = compatible(features(candidate.text), asked, strict=pending.config.strict)
                if why is not None:
                    continue
                raw = await self.store.get(candidate.entry)
                if raw is None:  # evicted, deleted, or in another process's memory store
                    continue
                entry = usable(raw)
                if entry is not None:
                    return Match(entry, candidate)
        except _FAILURES as exc:
            log.warning("semantic lookup failed, answering as a miss: %s", _why(exc))
        return None

    def remember(self, pending: Pending, entry: str, key: str, ttl: float) -> None:
        """Index the entry stored at `entry` (in the background)."""
        task = asyncio.get_running_loop().create_task(self._remember(pending, entry, key, ttl))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _remember(self, pending: Pending, entry: str, key: str, ttl: float) -> None:
        try:
            vector = pending.vector or await self._vector(pending)
            await self.index.add(
                vector,
                scope=pending.query.scope,
                entry=entry,
                key=key,
                text=pending.query.text,
                ttl=ttl,
                tenant=pending.tenant,
                model=pending.model,
                prompt=pending.prompt,
            )
        except _FAILURES as exc:
            log.warning("semantic index write failed (the entry is served exactly): %s", _why(exc))

    async def _vector(self, pending: Pending) -> list[float]:
        return await self.embed(pending.config.embedding_model, pending.query.text, pending.tenant)

    async def forget(self, **filters: str | None) -> None:
        """`DELETE /v1/cache`: the vectors of the entries it deletes (same filters). A
        failure is logged: a vector whose entry is gone is never served (`lookup` reads the
        entry), and it expires with the entry's TTL anyway."""
        await self.settle()  # an index write under way would bring a deleted vector back
        try:
            await self.index.delete(**filters)
        except _FAILURES as exc:
            log.warning("semantic index delete failed: %s", _why(exc))

    async def settle(self) -> None:
        """Wait for the background index writes under way (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def aclose(self) -> None:
        await self.settle()
        await self.index.aclose()


def _why(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return f"{type(exc).__name__}: {message}"
