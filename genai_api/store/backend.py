"""What the Redis users beside the store (L1, leases, stats, probes) need from a Redis topology.

One server and a Sentinel-guarded primary are one `RedisStore` (`store/redis.py`) with a
different client; a Redis Cluster is a `ClusterStore` (`store/cluster.py`). They differ in
the client and in how keys are grouped, never in what the L1, the leases or the stats do:

- `slot_groups(keys)`: the keys split so that each group may go to one script or one
  multi-key command (one hash slot on a cluster; all of them on one server);
- `node_groups(keys)`: the keys split per server, for one pipeline each (run in parallel);
- `guarded(op, key=...)`: an operation behind the breaker and the request's budget of the
  node holding `key` (one breaker for one server), within `REDIS_TIMEOUT`.

    for group in backend.slot_groups(keys):
        await backend.guarded(lambda: script(keys=group, args=..., client=backend.client),
                              key=group[0])
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

from redis.asyncio.client import PubSub
from redis.commands.core import AsyncScript

from genai_api.store.base import CacheStore
from genai_api.store.breaker import CircuitBreaker
from genai_api.store.refusals import Refusals

T = TypeVar("T")


class Sent(Protocol):
    """A command written to Redis whose reply is read later (`RedisBackend.send`)."""

    @property
    def left(self) -> bool:
        """Every byte of the command has left this process."""
        ...

    async def read(self) -> Any: ...


class RedisBackend(CacheStore, Protocol):
    """A Redis store (`CacheStore`) and what its other users need from it."""

    client: Any  # redis.asyncio.Redis, or RedisCluster
    timeout: float
    shards_down: tuple[str, ...]
    refusals: Refusals  # writes refused for want of memory (`refusals.py`)

    @property
    def cooldown(self) -> float:
        """Seconds between retries of work that waits for Redis to come back."""
        ...

    @property
    def failures(self) -> int:
        """Failures counted so far, on any node (a change means: Redis failed meanwhile)."""
        ...

    @property
    def breaker(self) -> CircuitBreaker:
        """The breaker of the whole store (one server's only one; a cluster's for keyless
        operations)."""
        ...

    def breaker_for(self, key: str) -> CircuitBreaker: ...

    def available(self, key: str) -> bool:
        """May the running request use Redis for `key` now (breaker closed, budget left)?"""
        ...

    def slot_groups(self, keys: Sequence[str]) -> list[list[str]]: ...

    def node_groups(self, keys: Sequence[str]) -> list[list[str]]: ...

    def register_script(self, source: str) -> AsyncScript: ...

    def pubsub(self) -> PubSub:
        """A fresh pub/sub connection (classic SUBSCRIBE: a cluster broadcasts PUBLISH)."""
        ...

    async def guarded(
        self, op: Callable[[], Awaitable[T]], *, entries: int = 1, key: str | None = None
    ) -> T: ...

    async def send(self, *command: Any, key: str) -> Sent: ...

    async def sweep_matching(
        self, pattern: str, each: Callable[[list[str]], Awaitable[int]]
    ) -> int:
        """`each(page)` for every page of keys matching `pattern` (SCAN, never blocking; on a
        cluster every primary, a page's keys all on one): the answers summed."""
        ...
