"""The vector index of semantic entries: the Redis query engine's HNSW search.

One hash per cached answer that may be served by meaning, under
``{namespace}:s:{dim}:{entry's storage key}``, with the vector, the cached prompt's last
user message (for the guard), the entry's storage and cache keys, and TAG fields:
`scope` (a digest of everything that must match exactly) and, for `DELETE /v1/cache`,
`tenant`, `model`, `prompt` and `key`. Tag values are hex digests, so no query ever
needs escaping. A hash expires with its entry (same TTL), and the index forgets it then.

Only the FT.* subset that Redis 8, Redis Stack and Valkey with the search module share:
`FT.CREATE ... ON HASH PREFIX ... SCHEMA ... TAG ... VECTOR HNSW 6 TYPE FLOAT32 DIM n
DISTANCE_METRIC COSINE`, `FT.SEARCH` with a tag pre-filter and `=>[KNN k @v $q AS d]`,
`DIALECT 2`, and `FT._LIST` to tell a server that has it. One index per vector length
(`{namespace}:s:{dim}`), created on first use, so two embedding models of different sizes
never share one. The client speaks RESP2, whose FT.SEARCH reply all three agree on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

_TAGS = ("scope", "tenant", "model", "prompt", "key")


def _retry() -> Retry:
    """One immediate retry (a pooled connection the server closed), as the cache's own
    client does. redis-py's default, three retries with a backoff of up to seconds, would
    hold every exact miss ~3.5 s on a search server that went away before it fails open."""
    return Retry(NoBackoff(), 1)


_DELETE_BATCH = 500


class SearchMissing(Exception):
    """The server answers, but has no query engine (FT.* commands unknown)."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A stored semantic entry near the query, as the index returned it."""

    entry: str  # the cached answer's storage key
    key: str  # its cache key (X-Cache-Key of the matched entry)
    text: str  # the last user message it answered
    similarity: float  # cosine similarity to the query


def tag(value: str) -> str:
    """A TAG value for `value`: hex, so a query needs no escaping of any character."""
    return hashlib.sha256(value.encode()).hexdigest()[:32]


async def _command(client: Redis, *args: Any) -> Any:
    """One raw command (redis-py leaves `execute_command` untyped)."""
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]


class VectorIndex:
    """FT.* over one Redis connection pool; every method raises `RedisError` on failure
    (the caller fails open)."""

    def __init__(self, client: Redis, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self._created: set[int] = set()

    @classmethod
    def from_url(cls, url: str, namespace: str, *, timeout: float = 1.0) -> VectorIndex:
        client = Redis.from_url(url, protocol=2, socket_timeout=timeout, retry=_retry())
        return cls(client, namespace)

    @classmethod
    def connect(cls, options: dict[str, Any], namespace: str, *, timeout: float) -> VectorIndex:
        """On a server given as connection options (`store.redis.redis_options`)."""
        client = Redis(**options, protocol=2, socket_timeout=timeout, retry=_retry())
        return cls(client, namespace)

    def _name(self, dim: int) -> str:
        return f"{self.namespace}:s:{dim}"

    async def check(self) -> None:
        """Raise `SearchMissing` when the server has no query engine."""
        try:
            await _command(self.client, "FT._LIST")
        except ResponseError as exc:
            raise SearchMissing(str(exc)) from exc

    async def _ensure(self, dim: int) -> None:
        if dim in self._created:
            return
        name = self._name(dim)
        try:
            await _command(
                self.client,
                "FT.CREATE", name, "ON", "HASH", "PREFIX", "1", f"{name}:",
                "SCHEMA", *(x for t in _TAGS for x in (t, "TAG")),
                "v", "VECTOR", "HNSW", "6", "TYPE", "FLOAT32", "DIM", str(dim),
                "DISTANCE_METRIC", "COSINE",
            )  # fmt: skip
        except ResponseError as exc:
            if "already exists" not in str(exc).lower():
                raise
        self._created.add(dim)

    async def add(
        self,
        vector: list[float],
        *,
        scope: str,
        entry: str,
        key: str,
        text: str,
        ttl: float,
        tenant: str,
        model: str,
        prompt: str | None,
    ) -> None:
        """Index the entry at `entry` (storage key) for `ttl` seconds, like the entry."""
        dim = len(vector)
        await self._ensure(dim)
        doc = f"{self._name(dim)}:{entry}"
        fields: dict[str, bytes | str] = {
            "v": np.asarray(vector, dtype=np.float32).tobytes(),
            "scope": scope,
            "tenant": tag(tenant),
            "model": tag(model),
            "prompt": tag(prompt or "-"),
            "key": key,
            "entry": entry,
            "text": text,
        }
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(doc, mapping=fields)  # type: ignore[arg-type]
            pipe.pexpire(doc, max(1, int(ttl * 1000)))
            await pipe.execute()

    async def nearest(self, vector: list[float], *, scope: str, k: int = 4) -> list[Candidate]:
        """The `k` entries of `scope` nearest `vector`, most similar first."""
        dim = len(vector)
        await self._ensure(dim)
        reply = await _command(
                self.client,
            "FT.SEARCH", self._name(dim), f"(@scope:{{{scope}}})=>[KNN {k} @v $q AS d]",
            "PARAMS", "2", "q", np.asarray(vector, dtype=np.float32).tobytes(),
            "SORTBY", "d", "RETURN", "4", "d", "entry", "key", "text",
            "LIMIT", "0", str(k), "DIALECT", "2",
        )  # fmt: skip
        found = []
        for fields in _documents(reply):
            try:
                similarity = 1.0 - float(fields[b"d"])
                found.append(
                    Candidate(
                        entry=fields[b"entry"].decode(),
                        key=fields[b"key"].decode(),
                        text=fields[b"text"].decode(),
                        similarity=similarity,
                    )
                )
            except (KeyError, ValueError, UnicodeDecodeError):
                continue  # a hash that is not ours, or half-expired: not a candidate
        return found

    async def delete(
        self,
        *,
        tenant: str | None = None,
        model: str | None = None,
        prompt: str | None = None,
        key: str | None = None,
    ) -> int:
        """Delete the vectors matching every given field (none: all of the namespace), in
        batches found by the index itself (no SCAN); returns how many."""
        clauses = [
            f"@{name}:{{{value}}}"
            for name, value in (
                ("tenant", tag(tenant) if tenant else None),
                ("model", tag(model) if model else None),
                ("prompt", tag(prompt) if prompt else None),
                ("key", key),
            )
            if value
        ]
        query = " ".join(clauses) or "*"
        deleted = 0
        for name in await self._indexes():
            while True:
                reply = await _command(
                self.client,
                    "FT.SEARCH", name, query, "NOCONTENT", "LIMIT", "0", str(_DELETE_BATCH),
                    "DIALECT", "2",
                )  # fmt: skip
                ids = list(reply[1:]) if isinstance(reply, list) else []
                if not ids:
                    break
                deleted += int(await self.client.delete(*ids))
                if len(ids) < _DELETE_BATCH:
                    break
        return deleted

    async def _indexes(self) -> list[str]:
        prefix = f"{self.namespace}:s:"
        names = await _command(self.client, "FT._LIST")
        out = []
        for raw in names or ():
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            if name.startswith(prefix) and name[len(prefix) :].isdigit():
                out.append(name)
        return out

    async def aclose(self) -> None:
        await self.client.aclose()


def _documents(reply: Any) -> list[dict[bytes, bytes]]:
    """The field maps of a RESP2 FT.SEARCH reply: [total, id, [f, v, ...], id, [...], ...]."""
    if not isinstance(reply, list) or len(reply) < 3:
        return []
    docs = []
    for fields in reply[2::2]:
        if isinstance(fields, list):
            docs.append(dict(zip(fields[::2], fields[1::2], strict=False)))
    return docs


__all__ = ["Candidate", "RedisError", "SearchMissing", "VectorIndex", "tag"]
