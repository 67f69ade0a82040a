"""`Tenancy`: the rule of CONTRACT §3 for objects that live upstream, in four calls.

Files, batches, vector stores, assistants, stored responses... live in the one upstream
account every tenant shares. When `CACHE_SCOPE=tenant` and `GATEWAY_API_KEYS` names more than
one key the rule is *enforced*: an object belongs to the tenant through whom it was created,
and every other tenant gets 404 for its id, as if it did not exist. An id the gateway never
saw created (made before the gateway, or at the provider directly) belongs to nobody, so it
is a 404 for everyone: the rule fails closed.

With one key (and `CACHE_SCOPE=tenant`) nothing is refused, but creations are still
*recorded*, so objects keep their owner when a second key is added. An open gateway or
`CACHE_SCOPE=shared` neither records nor checks.

    tenancy = Tenancy.build(settings, store)
    await tenancy.check(tenant, "file-abc")            # NotFound unless it is tenant's
    await tenancy.record(tenant, "response", "resp_1")  # the tenant's from now on
    owner = await tenancy.owner_of("resp_1")            # Owner(tenant, "response") or None
    await tenancy.forget("resp_1")                      # after the object was deleted

When the backend fails, an enforced check or record raises a 503 (`tenancy_unavailable`):
a rule that cannot be checked is not waived. When it is only recording, a failure is logged
and the request goes on. A Redis that is full is not failing: a record it refuses is kept in
the process until it has room, and one it evicted is written back (`kept.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from genai_api.errors import CacheUnavailable, GatewayError, NotFound
from genai_api.settings import Settings
from genai_api.store.base import CacheStore
from genai_api.store.near import redis_of
from genai_api.tenancy.kept import KeptOwnerRecords
from genai_api.tenancy.owners import (
    MemoryOwnerRecords,
    Owner,
    OwnerRecords,
    RedisOwnerRecords,
)

log = logging.getLogger("genai_api.tenancy")


def unavailable() -> GatewayError:
    return GatewayError(
        "The gateway cannot check who owns this object right now; try again shortly.",
        status_code=503,
        code="tenancy_unavailable",
    )


def not_found(object_id: str, param: str | None = None) -> NotFound:
    """The answer for an object that is not the caller's: the same whether it belongs to
    another tenant or does not exist, so the answer tells nothing about other tenants."""
    return NotFound(f"No such object: {object_id}.", param=param, code="object_not_found")


class Tenancy:
    def __init__(self, records: OwnerRecords | None, *, enforced: bool) -> None:
        if enforced and records is None:
            raise ValueError("an enforced tenancy needs somewhere to keep its records")
        self.records = records
        self.enforced = enforced

    @classmethod
    def build(cls, settings: Settings, store: CacheStore) -> Tenancy:
        """Records in the cache's Redis when there is one (shared by every replica; kept
        against a full or evicting Redis), else in this process; none when the gateway has
        no tenants to tell apart."""
        keys = set(settings.client_keys)
        if settings.cache_scope != "tenant" or not keys:
            return cls(None, enforced=False)
        redis = redis_of(store)
        records: OwnerRecords = (
            KeptOwnerRecords(RedisOwnerRecords(redis, settings.cache_namespace))
            if redis is not None
            else MemoryOwnerRecords()
        )
        return cls(records, enforced=len(keys) > 1)

    @property
    def recording(self) -> bool:
        """Whether creations are recorded (enforced or not)."""
        return self.records is not None

    async def owner_of(self, object_id: str) -> Owner | None:
        """Who created `object_id` through the gateway, if anyone did (and it was recorded)."""
        return (await self.owners_of([object_id]))[0]

    async def owners_of(self, object_ids: Sequence[str]) -> list[Owner | None]:
        if self.records is None:
            return [None] * len(object_ids)
        try:
            return await self.records.get_many(object_ids)
        except CacheUnavailable as exc:
            raise unavailable() from exc

    async def check(self, tenant: str, object_id: str, *, param: str | None = None) -> None:
        """Nothing when the rule lets `tenant` reach `object_id`, else `not_found` (404)."""
        await self.check_all(tenant, [(object_id, param)])

    async def check_all(self, tenant: str, refs: Sequence[tuple[str, str | None]]) -> None:
        """`check` for several `(object_id, param)` at once (one round trip); the first id
        that is not the tenant's is the one the 404 names."""
        if not self.enforced or not refs:
            return
        owners = await self.owners_of([object_id for object_id, _ in refs])
        for (object_id, param), owner in zip(refs, owners, strict=True):
            if owner is None or owner.tenant != tenant:
                raise not_found(object_id, param)

    async def owns(self, tenant: str, object_id: str) -> bool:
        """Whether `object_id` is recorded as the tenant's. Never raises: when the backend
        fails the answer is no (for decisions that only widen what is recorded)."""
        try:
            owner = await self.owner_of(object_id)
        except GatewayError:
            return False
        return owner is not None and owner.tenant == tenant

    async def mine(self, tenant: str, object_ids: Sequence[str]) -> list[bool]:
        """For a list answer: which of `object_ids` are the tenant's."""
        owners = await self.owners_of(object_ids)
        return [owner is not None and owner.tenant == tenant for owner in owners]

    async def record(self, tenant: str, kind: str, object_id: str) -> None:
        """`object_id` is the tenant's from now on, unless someone owns it already."""
        await self.record_all(tenant, [(object_id, kind)])

    async def record_all(self, tenant: str, items: Sequence[tuple[str, str]]) -> None:
        """`record` for several `(object_id, kind)` at once (one round trip)."""
        if self.records is None or not items:
            return
        claims = [(object_id, Owner(tenant, kind)) for object_id, kind in items]
        try:
            owners = await self.records.claim_many(claims)
        except CacheUnavailable as exc:
            if self.enforced:
                log.error(
                    "could not record the owner of %s: %s",
                    ", ".join(object_id for object_id, _ in items),
                    exc,
                )
                raise unavailable() from exc
            log.warning("could not record the owner of upstream objects: %s", exc)
            return
        for (object_id, _), owner in zip(items, owners, strict=True):
            if owner.tenant != tenant:  # the request rule should make this impossible
                log.warning("an answer carried %s, which another tenant owns", object_id)

    async def forget(self, object_id: str) -> None:
        """Drop the record of a deleted object (a failure only leaves a stale record)."""
        if self.records is None:
            return
        try:
            await self.records.forget(object_id)
        except CacheUnavailable as exc:
            log.warning("could not forget the owner of %s: %s", object_id, exc)

    async def aclose(self) -> None:
        """Write what the records keep in this process, if they can (at shutdown)."""
        if self.records is not None:
            await self.records.aclose()
