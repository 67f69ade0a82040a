"""Who created which upstream object: one record per object id, in the gateway's backend.

A record is `{namespace}:own:{object id}` = `"{tenant} {kind}"`, written once with `SET NX`
(the first tenant to claim an id keeps it) and deleted only when its object is deleted
through the gateway. Every operation touches one key, so the records work unchanged on a
Redis Cluster (several ids at once go in a pipeline, never a multi-key command).

Records carry no TTL on purpose: under a `volatile-*` eviction policy Redis evicts only keys
that have one (the cache entries), so a full Redis never forgets who owns what. What a full
Redis refuses and what an `allkeys-*` policy evicts is kept, or written back, by each process
(`kept.py`), never so that a tenant reaches another's object: a record nobody has stays a 404
for everyone. `DELETE /v1/cache` never matches them (it deletes `{namespace}:e:*`).

    records = MemoryOwnerRecords()
    await records.claim("file-abc", Owner("t1", "file"))   # -> Owner("t1", "file")
    await records.claim("file-abc", Owner("t2", "file"))   # -> Owner("t1", "file"): kept
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from genai_api.keys import segment
from genai_api.store.backend import RedisBackend


class Owner(NamedTuple):
    """The tenant that created an object, and what kind of object it is (`file`, `batch`...)."""

    tenant: str
    kind: str

    def encode(self) -> bytes:
        return f"{self.tenant} {self.kind}".encode()

    @classmethod
    def decode(cls, raw: bytes | str | None) -> Owner | None:
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else raw
        tenant, _, kind = text.partition(" ")
        return cls(tenant, kind or "object")


class OwnerRecords(Protocol):
    """Where ownership records live. Implementations raise `CacheUnavailable` when their
    backend fails; the caller decides what that means (see `Tenancy`)."""

    name: str

    async def get_many(self, object_ids: Sequence[str]) -> list[Owner | None]: ...

    async def claim_many(self, claims: Sequence[tuple[str, Owner]]) -> list[Owner]:
        """Record each `(object_id, owner)` unless the id has an owner already; the owner
        each id has afterwards, in order."""
        ...

    async def forget(self, object_id: str) -> None: ...

    async def aclose(self) -> None:
        """At shutdown: write what waits in the process, if anything does."""
        ...


class MemoryOwnerRecords:
    """Records in this process (CACHE_BACKEND=memory): one process, one truth."""

    name = "memory"

    def __init__(self) -> None:
        self._owners: dict[str, Owner] = {}

    async def get_many(self, object_ids: Sequence[str]) -> list[Owner | None]:
        return [self._owners.get(i) for i in object_ids]

    async def claim_many(self, claims: Sequence[tuple[str, Owner]]) -> list[Owner]:
        return [self._owners.setdefault(object_id, owner) for object_id, owner in claims]

    async def forget(self, object_id: str) -> None:
        self._owners.pop(object_id, None)

    async def aclose(self) -> None:
        return None


class RedisOwnerRecords:
    """Records in the cache's Redis, shared by every worker and replica; calls go through
    the store's breaker and deadlines like any other Redis operation of a request."""

    name = "redis"

    def __init__(self, redis: RedisBackend, namespace: str) -> None:
        self._redis = redis
        self._prefix = f"{namespace}:own:"

    def key(self, object_id: str) -> str:
        return self._prefix + segment(object_id)

    async def get_many(self, object_ids: Sequence[str]) -> list[Owner | None]:
        if not object_ids:
            return []
        client = self._redis.client

        async def run() -> list[bytes | None]:
            async with client.pipeline(transaction=False) as pipe:
                for object_id in object_ids:
                    pipe.get(self.key(object_id))
                return list(await pipe.execute())

        raw = await self._redis.guarded(run, entries=len(object_ids))
        return [Owner.decode(value) for value in raw]

    async def claim_many(self, claims: Sequence[tuple[str, Owner]]) -> list[Owner]:
        if not claims:
            return []
        client = self._redis.client

        async def run() -> list[bytes | None]:
            # SET NX then GET, per key: the GET reads whoever won (this claim or an earlier
            # one). Two commands on one key, so a cluster sends both to the same node.
            async with client.pipeline(transaction=False) as pipe:
                for object_id, owner in claims:
                    key = self.key(object_id)
                    pipe.set(key, owner.encode(), nx=True)
                    pipe.get(key)
                return list(await pipe.execute())[1::2]

        raw = await self._redis.guarded(run, entries=2 * len(claims))
        return [Owner.decode(value) or owner for value, (_, owner) in zip(raw, claims, strict=True)]

    async def forget(self, object_id: str) -> None:
        client = self._redis.client
        await self._redis.guarded(lambda: client.delete(self.key(object_id)))

    async def aclose(self) -> None:
        return None
