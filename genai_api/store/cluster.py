"""The store on a Redis Cluster: redis-py's `RedisCluster`, a breaker per node.

Why per node: on one server a failure means the cache is down; in a cluster it means one
shard is. So every operation is guarded by the breaker and the request's budget of the node
serving its key (`available`, `guarded(key=...)`): a dead or hung primary opens its own
breaker, its keys BYPASS, and keys on healthy nodes are served as before. Operations that
span nodes (an embedding batch's MGET and writes, `DELETE /v1/cache`) run one pipeline per
node, nodes in parallel, each behind that node's breaker: a sick node costs the keys it holds.

How a failover is found: redis-py refreshes its slot map when a command meets a dead node;
once a node's breaker is open no command reaches it, so its probe (one per cool-down, in the
background) refreshes the slot map first. When the node no longer serves slots (a replica was
promoted), its keys now route to the new primary, whose breaker is closed: hits resume by
themselves. Otherwise the probe PINGs the node and closes its breaker if it answers.

Operations without a key (SCRIPT LOAD, PUBLISH) and requests made before the slot map is
known use the breaker of the cluster as a whole ("cluster").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from genai_api.errors import CacheUnavailable
from genai_api.store import budget
from genai_api.store.breaker import CircuitBreaker
from genai_api.store.cluster_client import ClusterScript, node_pubsub, owner, slot_of

log = logging.getLogger("genai_api.store")

T = TypeVar("T")
# RedisClusterException is not a RedisError: "cluster cannot be connected", "slot not covered".
_FAILURES = (RedisError, RedisClusterException, OSError, asyncio.TimeoutError)
WHOLE = "cluster"  # the breaker of keyless operations and of an unknown slot map
WARM_PER_NODE = 16
DISCOVERY_SECONDS = 5.0
WARM_SECONDS = 3.0


class Settled:
    """A command already run to its reply (`ClusterStore.send`): the cluster client routes
    and retries each command itself, so there is no socket to leave a reply on."""

    left = False

    def __init__(self, reply: Any, error: BaseException | None) -> None:
        self._reply, self._error = reply, error

    async def read(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._reply


class ClusterStore:
    name = "redis-cluster"

    def __init__(
        self,
        client: RedisCluster,
        *,
        timeout: float,
        max_connections: int,
        breaker_seconds: float,
        breaker_failures: int = 1,
    ) -> None:
        self.client = client
        self.timeout = timeout
        self.max_connections = max_connections  # per node
        self._breaker_args = (breaker_seconds, breaker_failures)
        self._breakers: dict[str, CircuitBreaker] = {}
        # redis-py's node pools raise past `max_connections` instead of waiting: operations
        # wait here for a turn (within their deadline), as on one server's blocking pool. A
        # few connections are left for redis-py's own topology queries.
        self._turns = max(1, max_connections - 4)
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._probes: dict[str, asyncio.Task[None]] = {}
        self._failures = 0
        self.last_failure: str | None = None
        self.shards_down: tuple[str, ...] = ()
        self._next_pubsub = 0

    # --- nodes and their breakers
    def _node(self, key: str | None) -> ClusterNode | None:
        return None if key is None else owner(self.client, key)

    def _breaker(self, name: str) -> CircuitBreaker:
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = self._breakers[name] = CircuitBreaker(*self._breaker_args)
        return breaker

    def breaker_for(self, key: str) -> CircuitBreaker:
        node = self._node(key)
        return self._breaker(node.name if node is not None else WHOLE)

    @property
    def breaker(self) -> CircuitBreaker:
        """The cluster-wide breaker (keyless operations, no slot map yet)."""
        return self._breaker(WHOLE)

    @property
    def cooldown(self) -> float:
        return self._breaker_args[0]

    @property
    def failures(self) -> int:
        return self._failures

    def available(self, key: str) -> bool:
        node = self._node(key)
        name = node.name if node is not None else WHOLE
        if self._breaker(name).is_open:
            return False
        spending = budget.current()
        return spending is None or not spending.nodes or name not in spending.nodes

    def slot_groups(self, keys: Sequence[str]) -> list[list[str]]:
        groups: dict[int, list[str]] = {}
        for key in keys:
            groups.setdefault(slot_of(key), []).append(key)
        return list(groups.values())

    def node_groups(self, keys: Sequence[str]) -> list[list[str]]:
        groups: dict[str, list[str]] = {}
        for key in keys:
            node = self._node(key)
            groups.setdefault(node.name if node is not None else WHOLE, []).append(key)
        return list(groups.values())

    def register_script(self, source: str) -> AsyncScript:
        return ClusterScript(self.client, source)

    def pubsub(self) -> PubSub:
        """Pub/sub on one node, the next in turn of those whose breaker is closed (a
        subscription that lost its node comes back on another)."""
        nodes = list(self.client.nodes_manager.nodes_cache.values()) or list(
            self.client.nodes_manager.startup_nodes.values()
        )
        healthy = [n for n in nodes if not self._breaker(n.name).is_open] or nodes
        self._next_pubsub += 1
        return node_pubsub(healthy[self._next_pubsub % len(healthy)])

    # --- guarded operations
    async def _call(
        self,
        op: Callable[[], Awaitable[T]],
        node: ClusterNode | None,
        *,
        entries: int = 1,
        bounded: bool = True,
    ) -> T:
        name = node.name if node is not None else WHOLE
        if not self.client.nodes_manager.slots_cache:
            # No slot map yet (the cluster was away at start-up): requests must not each start
            # redis-py's discovery within their short deadline: one background probe per
            # cool-down does it (`ping` at start-up trips the breaker when it fails).
            whole = self.breaker
            if not whole.is_open:
                whole.trip()
            if whole.probe_due():
                self._probe(WHOLE)
            raise CacheUnavailable("redis cluster: its nodes are not known yet")
        spending = budget.current()
        if spending is not None and spending.nodes and name in spending.nodes:
            raise CacheUnavailable(f"redis node {name} skipped: it already failed this request")
        breaker = self._breaker(name)
        if breaker.is_open:
            if spending is not None:
                _spend(spending, name)
            if breaker.probe_due():
                self._probe(name)
            raise CacheUnavailable(f"redis node {name}: circuit open")
        started = breaker.now()
        slots = self._slots.get(name)
        if slots is None:
            slots = self._slots[name] = asyncio.Semaphore(self._turns)
        try:
            if not bounded:
                async with slots:
                    result = await op()
            else:
                async with asyncio.timeout(self.deadline(entries)), slots:
                    result = await op()
        except _FAILURES as exc:
            if spending is not None:
                _spend(spending, name)
            self._failures += 1
            breaker.failure(started)
            raise CacheUnavailable(f"redis node {name}: {type(exc).__name__}: {exc}") from exc
        breaker.success()
        return result

    @property
    def discovery_seconds(self) -> float:
        """The first discovery also fetches the command table (`COMMAND`, ~100 KB): it gets
        more than one operation's deadline."""
        return max(2 * self.timeout, DISCOVERY_SECONDS)

    def deadline(self, entries: int) -> float:
        """REDIS_TIMEOUT, and one more per 256 entries moved (as on one server)."""
        return self.timeout * (1 + entries // 256)

    async def guarded(
        self, op: Callable[[], Awaitable[T]], *, entries: int = 1, key: str | None = None
    ) -> T:
        return await self._call(op, self._node(key), entries=entries)

    async def send(self, *command: Any, key: str) -> Settled:
        """Run `command` (an EVALSHA) to its reply; a NOSCRIPT is handed to the reader."""

        async def run() -> tuple[Any, BaseException | None]:
            try:
                return await self.client.execute_command(*command), None
            except NoScriptError as exc:
                return None, exc

        return Settled(*await self._call(run, self._node(key)))

    async def _per_node(
        self,
        keys: Sequence[str],
        op: Callable[[list[str]], Awaitable[list[Any]]],
    ) -> tuple[list[Any], CacheUnavailable | None]:
        """`op(group)` for each node's keys, nodes in parallel; the results in `keys` order
        (None where the node failed) and the first failure."""
        groups = self.node_groups(keys)
        if len(groups) == 1:
            try:
                return await self._call(
                    lambda: op(groups[0]), self._node(groups[0][0]), entries=len(keys)
                ), None
            except CacheUnavailable as exc:
                return [None] * len(keys), exc
        position = {key: i for i, key in enumerate(keys)}
        out: list[Any] = [None] * len(keys)
        failed: list[CacheUnavailable] = []

        async def one(group: list[str]) -> None:
            try:
                found = await self._call(
                    lambda: op(group), self._node(group[0]), entries=len(group)
                )
            except CacheUnavailable as exc:
                failed.append(exc)
                return
            for key, value in zip(group, found, strict=True):
                out[position[key]] = value

        await asyncio.gather(*(one(group) for group in groups))
        return out, (failed[0] if failed else None)

    # --- the CacheStore protocol
    async def get(self, key: str) -> bytes | None:
        value = await self.guarded(lambda: self.client.get(key), key=key)
        return cast(bytes | None, value)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """One MGET per slot, pipelined per node, nodes in parallel (`mget_nonatomic` per
        node). Keys on a node that fails read as missing, that node's failure spends the
        request's budget for it, so its keys go on without the cache (BYPASS); when every
        node fails this raises `CacheUnavailable`."""
        if not keys:
            return []
        values, failure = await self._per_node(keys, self.client.mget_nonatomic)
        if failure is not None and all(v is None for v in values):
            raise failure
        return values

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        px = max(1, int(ttl * 1000))
        await self.guarded(lambda: self.client.set(key, value, px=px), key=key)

    async def set_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        if not items:
            return
        by_key = {key: (value, ttl) for key, value, ttl in items}

        async def write(group: list[str]) -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                for key in group:
                    value, ttl = by_key[key]
                    pipe.set(key, value, px=max(1, int(ttl * 1000)))
                return list(await pipe.execute())

        _, failure = await self._per_node(list(by_key), write)
        if failure is not None:
            raise failure

    async def delete_matching(self, pattern: str) -> int:
        """SCAN and UNLINK on every primary, primaries in parallel, never blocking one.
        A primary that fails is reported after the others are done (run it again)."""
        primaries = self.client.get_primaries() if self.client.nodes_manager.slots_cache else []
        if not primaries:
            await self.guarded(self.client.initialize)  # raises when the cluster is away
            primaries = self.client.get_primaries()
        counts = await asyncio.gather(
            *(self._delete_on(node, pattern) for node in primaries), return_exceptions=True
        )
        failures = [c for c in counts if isinstance(c, BaseException)]
        if failures:
            raise failures[0]
        return sum(int(c) for c in counts if not isinstance(c, BaseException))

    async def _delete_on(self, node: ClusterNode, pattern: str) -> int:
        async def run() -> int:
            deleted, cursor = 0, 0
            while True:
                async with asyncio.timeout(self.timeout):
                    # A cluster SCAN answers a cursor per node asked: {node name: cursor}.
                    cursors, keys = await self.client.scan(
                        cursor, match=pattern, count=1000, target_nodes=node
                    )
                cursor = int(cast(dict[str, Any], cursors)[node.name])
                if keys:
                    async with asyncio.timeout(self.timeout * (1 + len(keys) // 256)):
                        deleted += int(await self.client.unlink(*keys))
                if not cursor:
                    return deleted

        return await self._call(run, node, bounded=False)

    # --- health
    async def ping(self) -> bool:
        """True when at least one primary answers (the cache serves some keys); `shards_down`
        names the primaries that do not. Refreshes the slot map first when one is down, so a
        promoted replica counts as the primary it replaced."""
        try:
            async with asyncio.timeout(self.discovery_seconds):
                await self.client.initialize()
        except _FAILURES as exc:
            self.breaker.trip()
            self._failures += 1
            self.last_failure = f"no node of the cluster answered: {type(exc).__name__}: {exc}"
            self.shards_down = (WHOLE,)
            return False
        down = await self._ping_primaries()
        if down:
            with contextlib.suppress(*_FAILURES):
                async with asyncio.timeout(2 * self.timeout):
                    await self.client.nodes_manager.initialize(last_failed_node_name=down[0])
            down = await self._ping_primaries()
        primaries = self.client.get_primaries()
        self.shards_down = tuple(down)
        self.breaker.reset()
        if primaries and len(down) == len(primaries):
            self.last_failure = f"no primary answered ({', '.join(down)})"
            return False
        self.last_failure = f"primaries not answering: {', '.join(down)}" if down else None
        return True

    async def _ping_primaries(self) -> list[str]:
        primaries = self.client.get_primaries()
        answers = await asyncio.gather(*(self._ping_node(node) for node in primaries))
        return [node.name for node, ok in zip(primaries, answers, strict=True) if not ok]

    async def _ping_node(self, node: ClusterNode) -> bool:
        breaker = self._breaker(node.name)
        try:
            async with asyncio.timeout(2 * self.timeout):
                await self.client.ping(target_nodes=node)
        except _FAILURES:
            breaker.trip()
            return False
        breaker.reset()
        return True

    def _probe(self, name: str) -> None:
        if name not in self._probes:
            task = asyncio.create_task(
                self._probe_node(name), name=f"redis-probe-{name}", context=budget.detached()
            )
            self._probes[name] = task
            task.add_done_callback(lambda _: self._probes.pop(name, None))

    async def _probe_node(self, name: str) -> None:
        """Refresh the slot map, then: a node that serves no slot any more is forgotten (its
        keys moved to a promoted replica); one that does is PINGed (closed if it answers)."""
        manager = self.client.nodes_manager
        with contextlib.suppress(*_FAILURES):
            if name == WHOLE:
                async with asyncio.timeout(self.discovery_seconds):
                    await self.client.initialize()
            else:
                async with asyncio.timeout(2 * self.timeout):
                    await manager.initialize(last_failed_node_name=name)
        if name == WHOLE:
            if manager.slots_cache:
                self._breaker(WHOLE).reset()
            else:
                self._breaker(WHOLE).trip()
            return
        node = manager.nodes_cache.get(name)
        if node is None or node not in self.client.get_primaries():
            log.info("redis node %s serves no slot any more: its keys moved", name)
            self._breakers.pop(name, None)
            return
        await self._ping_node(node)

    async def warm(self) -> None:
        """Open up to `WARM_PER_NODE` connections to each primary (start-up, after a ping)."""
        wanted = min(WARM_PER_NODE, self.max_connections)

        async def fill(node: ClusterNode) -> None:
            await asyncio.gather(
                *(self.client.ping(target_nodes=node) for _ in range(wanted)),
                return_exceptions=True,
            )

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(WARM_SECONDS, 2 * self.timeout)):
                await asyncio.gather(*(fill(node) for node in self.client.get_primaries()))

    async def close(self) -> None:
        for task in list(self._probes.values()):
            task.cancel()
        await asyncio.gather(*self._probes.values(), return_exceptions=True)
        with contextlib.suppress(*_FAILURES):
            await self.client.aclose()


def _spend(spending: budget.Budget, name: str) -> None:
    if spending.nodes is None:
        spending.nodes = set()
    spending.nodes.add(name)
