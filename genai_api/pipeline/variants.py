"""Several answers per key for sampled requests, and a "regenerate" that gets a new one.

A chat UI's regenerate button resends the identical request (temperature 0.8, no seed);
served the cached answer, the person pressing it sees a broken button. So for a request
that samples (`Api.nondeterministic`: temperature > 0 and no seed), a key holds up to
`CACHE_VARIANTS` answers (`Entry.more`), and:

- a plain request is a HIT on one of the stored answers, picked at random, as any hit is;
- a request from the same requester (the tenant, plus the OpenAI `user` field when the
  body has one) for the same key within `CACHE_REGENERATE_SECONDS` of an answer is a
  regenerate: it gets a stored answer that requester has not been served yet (HIT), or,
  when it has seen them all, a fresh one from the provider (MISS), added to the entry while
  it has room;
- deterministic requests keep one answer, and take none of these steps.

Who saw what lives here: in this process (always checked first) and, with a shared cache,
in the store too (`{ns}:seen:<requester>:<key>`, expiring with the window) so a regenerate
landing on another replica is recognised. Recording never waits for the store, and a store
that fails only makes a regenerate look like a plain repeat.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from genai_api.errors import CacheUnavailable
from genai_api.keys import ANONYMOUS
from genai_api.store import budget
from genai_api.store.base import CacheStore

log = logging.getLogger("genai_api.pipeline.variants")

LOCAL_RECORDS = 100_000  # requester-key pairs remembered in this process


class Variants:
    def __init__(
        self,
        store: CacheStore,
        namespace: str,
        *,
        most: int,
        window: float,
        shared: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.most = most
        self.window = window
        self.shared = shared  # the store is seen by other processes: record there too
        self.clock = clock
        self.prefix = f"{namespace}:seen:"
        self.entry_prefix = f"{namespace}:e:"
        # Several answers per key, and regenerates to add them (fixed: read on every request).
        self.enabled = most > 1 and window > 0
        self._local: OrderedDict[tuple[str, str], tuple[float, frozenset[int]]] = OrderedDict()
        self._writes: set[asyncio.Task[None]] = set()

    @staticmethod
    def requester(caller: str, body: dict[str, Any]) -> str | None:
        """Who is asking: the caller (a client key's tenant id) and, when the body names one,
        the OpenAI `user`. None when nobody can be told apart (no key, no `user`): every
        anonymous client would be one requester, each one's repeat another's regenerate."""
        user = body.get("user")
        if isinstance(user, str) and user:
            who = f"{caller}\0{user}"
        elif caller != ANONYMOUS:
            who = caller
        else:
            return None
        return hashlib.sha256(who.encode()).hexdigest()[:24]

    def pick(self, answers: int) -> int:
        """The answer a plain hit gets: any of them."""
        return random.randrange(answers) if answers > 1 else 0

    @staticmethod
    def unseen(answers: int, seen: frozenset[int]) -> int | None:
        """The first stored answer `seen` lacks, else None (time for a fresh one)."""
        return next((i for i in range(answers) if i not in seen), None)

    async def seen(self, requester: str, skey: str) -> frozenset[int] | None:
        """The answers of `skey` served to `requester` within the window, None if none."""
        now = self.clock()
        local = self._local.get((requester, skey))
        if local is not None and local[0] > now:
            return local[1]
        if not self.shared:
            return None
        try:
            # `get_many`/`set_many` go to Redis itself: an L1 copy of a record would lag, and
            # an L1 invalidation published per record would wake every process for nothing.
            (raw,) = await self.store.get_many([self._key(requester, skey)])
        except CacheUnavailable:
            return None  # fail open: a plain repeat
        if not raw:
            return None
        try:
            return frozenset(int(i) for i in raw.decode().split(",") if i)
        except ValueError:
            return None

    def record(self, requester: str, skey: str, index: int) -> None:
        """`requester` was served answer `index` of `skey` (negative: one not stored)."""
        if index < 0:
            return
        now = self.clock()
        key = (requester, skey)
        until, indexes = self._local.pop(key, (0.0, frozenset()))
        indexes = indexes | {index} if until > now else frozenset({index})
        self._local[key] = (now + self.window, indexes)
        while len(self._local) > LOCAL_RECORDS:
            self._local.popitem(last=False)
        if self.shared:
            value = ",".join(str(i) for i in sorted(indexes)).encode()
            task = asyncio.create_task(
                self._write(self._key(requester, skey), value), context=budget.detached()
            )
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def _write(self, key: str, value: bytes) -> None:
        try:
            await self.store.set_many([(key, value, self.window)])
        except CacheUnavailable as exc:
            log.debug("regenerate record not written: %s", exc.message)

    def _key(self, requester: str, skey: str) -> str:
        return f"{self.prefix}{requester}:{skey.removeprefix(self.entry_prefix)}"

    async def aclose(self) -> None:
        await asyncio.gather(*self._writes, return_exceptions=True)
