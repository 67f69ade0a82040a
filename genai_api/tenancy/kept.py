"""Owner records that a full Redis cannot refuse and its eviction cannot take (CONTRACT §6).

Redis under `maxmemory` may do two things to a record (`owners.RedisOwnerRecords`):

- **refuse to write it** (`noeviction`, or a `volatile-*` policy with nothing volatile left):
  the object exists upstream, and failing its creation would make a request fail because of
  `maxmemory`. So a refused claim is *kept*: Redis is read (a full Redis still serves reads),
  an id it already has an owner for keeps that owner, and an id it has none for is held in
  `pending`, in this process, bounded (`PENDING_MOST`). The creator gets its answer, and this
  process honours a pending record at once; a background task writes the pending records
  (`SET NX`, as any claim) as soon as Redis has room, retried with backoff (`FIRST_RETRY`
  doubling to `LAST_RETRY`), each refused attempt counted by the store like any refused
  write (`genai_cache_refused_writes_total`). Other processes and replicas see no record
  until it lands, so they answer 404 for the object meanwhile: the rule fails closed there.
- **evict it** (`allkeys-*`): each process remembers the owners it read or wrote lately
  (`Recent`, bounded by `RECENT_MOST`); a record Redis no longer has but this process
  remembers is written back (`SET NX`, then read: an owner Redis has always wins) and
  honoured. A process that never saw the record answers 404 for the object, to everyone,
  until one that remembers it has been asked for it.

Neither table can weaken isolation: Redis's owner always wins over both, an entry only ever
holds an owner Redis gave (or would have given: the first claim of an id that has no record),
and owners never change (a record is deleted only when its object is), so a table can make an
object reachable to its own tenant, never to another. What the tables cannot do
(records lost with a process that stops while Redis is full, objects a process never saw
under `allkeys-*`) is in docs/passthrough.md, "Records under maxmemory".
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence

from genai_api.errors import CacheUnavailable, WriteRefused
from genai_api.store import budget
from genai_api.tenancy.owners import Owner, RedisOwnerRecords

log = logging.getLogger("genai_api.tenancy")

PENDING_MOST = 50_000  # records kept while Redis refuses writes (~10 MB when full, measured)
RECENT_MOST = 50_000  # owners remembered against eviction (~10 MB when full, measured)
WRITE_BATCH = 500  # pending records per background write (one pipeline)
FIRST_RETRY = 0.25  # seconds before the first background write; doubled after each refusal
LAST_RETRY = 4.0  # ...up to this
CLOSE_SECONDS = 2.0  # at shutdown, how long pending records may take to land
WRITTEN_BACK_WARNING_EVERY = 60.0  # seconds between two "written back" warnings


class Recent:
    """The owners this process read or wrote lately, the least recent first; bounded.

    An `OrderedDict`: dropping the least recent is O(1) (a plain dict's first key is found
    by a scan past the slots of every key deleted before it). Owners repeat (one per tenant
    and kind), so each distinct one is held once and an entry costs its id and a slot."""

    def __init__(self, most: int = RECENT_MOST) -> None:
        self.most = most
        self._owners: OrderedDict[str, Owner] = OrderedDict()
        self._shared: dict[Owner, Owner] = {}

    def __len__(self) -> int:
        return len(self._owners)

    def get(self, object_id: str) -> Owner | None:
        return self._owners.get(object_id)

    def share(self, owner: Owner) -> Owner:
        """The one copy of `owner` this table holds."""
        shared = self._shared.get(owner)
        if shared is None:
            if len(self._shared) >= 4096:  # a bound on tenants x kinds, never reached in use
                self._shared.clear()
            shared = self._shared[owner] = owner
        return shared

    def keep(self, object_id: str, owner: Owner) -> None:
        owners = self._owners
        owners[object_id] = self.share(owner)
        owners.move_to_end(object_id)
        if len(owners) > self.most:
            owners.popitem(last=False)

    def drop(self, object_id: str) -> None:
        self._owners.pop(object_id, None)


class KeptOwnerRecords:
    """`RedisOwnerRecords` with the two tables of the module docstring in front of it."""

    name = "redis"

    def __init__(
        self,
        records: RedisOwnerRecords,
        *,
        pending_most: int = PENDING_MOST,
        recent_most: int = RECENT_MOST,
    ) -> None:
        self.records = records
        self.pending_most = pending_most
        self.pending: dict[str, Owner] = {}  # refused by a full Redis, not written yet
        self.recent = Recent(recent_most)
        self.written_back = 0  # records found evicted and written back
        self._task: asyncio.Task[None] | None = None
        self._writing = asyncio.Lock()  # one writer: a second would take the first's for gone
        self._failing = False  # the last background write failed (one line per outage)
        self._outage = False  # records were kept since Redis last had room (warned once)
        self._warned = -WRITTEN_BACK_WARNING_EVERY

    async def get_many(self, object_ids: Sequence[str]) -> list[Owner | None]:
        owners = await self.records.get_many(object_ids)
        evicted: list[tuple[int, str, Owner]] = []
        for n, (object_id, owner) in enumerate(zip(object_ids, owners, strict=True)):
            if owner is not None:
                self.recent.keep(object_id, owner)
            elif (pending := self.pending.get(object_id)) is not None:
                owners[n] = pending
            elif (known := self.recent.get(object_id)) is not None:
                evicted.append((n, object_id, known))
        if evicted:
            back = await self._claim([(object_id, owner) for _, object_id, owner in evicted])
            for (n, _, _), owner in zip(evicted, back, strict=True):
                owners[n] = owner
            self._written_back(len(evicted))
        return owners

    async def claim_many(self, claims: Sequence[tuple[str, Owner]]) -> list[Owner]:
        return await self._claim(claims)

    async def forget(self, object_id: str) -> None:
        self.pending.pop(object_id, None)  # never written, not even later
        self.recent.drop(object_id)
        await self.records.forget(object_id)

    async def _claim(self, claims: Sequence[tuple[str, Owner]]) -> list[Owner]:
        try:
            owners = await self.records.claim_many(claims)
        except WriteRefused:
            return await self._keep(claims)
        for (object_id, _), owner in zip(claims, owners, strict=True):
            self.recent.keep(object_id, owner)
        return owners

    async def _keep(self, claims: Sequence[tuple[str, Owner]]) -> list[Owner]:
        """Claims a full Redis refused: each id's owner in Redis if it has one, else the
        claim, kept in `pending` (an id pending already keeps its first claim, as `SET NX`
        would). Raises `WriteRefused` when `pending` has no room for them."""
        known = await self.records.get_many([object_id for object_id, _ in claims])
        owners: list[Owner] = []
        new: dict[str, Owner] = {}
        for (object_id, claim), owner in zip(claims, known, strict=True):
            if owner is not None:
                self.recent.keep(object_id, owner)
            else:
                owner = self.pending.get(object_id) or new.get(object_id)
                owner = owner or self.recent.share(claim)
                new[object_id] = owner
            owners.append(owner)
        added = sum(1 for object_id in new if object_id not in self.pending)
        if len(self.pending) + added > self.pending_most:
            raise WriteRefused(
                f"redis is full and {len(self.pending)} owner records wait in this process "
                "already (the most it keeps)"
            )
        if new and not self._outage:
            self._outage = True
            log.warning(
                "tenancy: Redis is full (writes refused): owners of new objects are kept in "
                "this process and written once it has room; other processes and replicas "
                "answer 404 for those objects until then"
            )
        self.pending.update(new)
        if self.pending and (self._task is None or self._task.done()):
            # Detached: a request's spent Redis budget must not stop the writes for good.
            self._task = asyncio.get_running_loop().create_task(
                self._write_forever(), name="tenancy-owners", context=budget.detached()
            )
        return owners

    async def _write_forever(self) -> None:
        delay = FIRST_RETRY
        while True:
            await asyncio.sleep(delay)
            try:
                written = await self.write_pending()
            except Exception:  # the outermost boundary of a background task: never die
                log.exception("tenancy: writing pending owner records failed")
                written = False
            if written and not self.pending:
                return
            delay = FIRST_RETRY if written else min(delay * 2, LAST_RETRY)

    async def write_pending(self) -> bool:
        """Write every pending record to Redis, `WRITE_BATCH` at a time; False when Redis
        refused or failed (the rest stay pending, to be retried)."""
        async with self._writing:
            return await self._write_pending()

    async def _write_pending(self) -> bool:
        while self.pending:
            batch = list(itertools.islice(self.pending.items(), WRITE_BATCH))
            try:
                owners = await self.records.claim_many(batch)
            except CacheUnavailable as exc:  # a refusal is counted by the store
                if not self._failing:
                    log.info("tenancy: %d owner record(s) wait for Redis: %s", len(batch), exc)
                self._failing = True
                return False
            gone: list[str] = []
            for (object_id, claim), owner in zip(batch, owners, strict=True):
                if self.pending.get(object_id) is claim:
                    del self.pending[object_id]
                    self.recent.keep(object_id, owner)
                    if owner.tenant != claim.tenant:  # the request rule makes this impossible
                        log.warning("tenancy: %s was recorded for another tenant", object_id)
                elif object_id not in self.pending:
                    gone.append(object_id)  # deleted while this write was on its way
            for object_id in gone:
                with contextlib.suppress(CacheUnavailable):
                    await self.records.forget(object_id)
        if self._outage:
            log.info("tenancy: Redis has room again; the owner records kept meanwhile are written")
        self._failing = self._outage = False
        return True

    def _written_back(self, n: int) -> None:
        self.written_back += n
        now = time.monotonic()
        if now - self._warned >= WRITTEN_BACK_WARNING_EVERY:
            self._warned = now
            log.warning(
                "tenancy: %d owner record(s) had been evicted by Redis and were written back "
                "from this process's memory (a process that never saw one answers 404 for its "
                "object); run Redis with maxmemory-policy volatile-lru to keep them all",
                n,
            )

    async def aclose(self) -> None:
        """Stop the background writes and try once more (bounded); say what is lost."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if not self.pending:
            return
        with contextlib.suppress(TimeoutError, CacheUnavailable):
            async with asyncio.timeout(CLOSE_SECONDS):
                await self.write_pending()
        if self.pending:
            log.error(
                "tenancy: %d owner record(s) could not be written to Redis before shutdown "
                "(it is full): those objects now belong to nobody (404 for everyone), e.g. %s",
                len(self.pending),
                ", ".join(itertools.islice(self.pending, 5)),
            )
