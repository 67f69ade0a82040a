"""The nodes of a Redis Cluster as the store sees them: a breaker each, probes, health.

Why per node: on one server a failure means the cache is down; in a cluster it means one shard
is. Every operation is guarded by the breaker of the node serving its key, so a dead or hung
primary opens its own breaker and its keys BYPASS while keys on healthy nodes are served.

How a failover is found: redis-py refreshes its slot map when a command meets a dead node;
once a node's breaker is open no command reaches it, so its probe (one per cool-down, in the
background) refreshes the slot map first. When the node no longer serves slots (a replica was
promoted), its keys now route to the new primary, whose breaker is closed: hits resume by
themselves. Otherwise the probe PINGs the node and closes its breaker if it answers.

Operations without a key (SCRIPT LOAD, PUBLISH) and requests made before the slot map is
known use the breaker of the cluster as a whole (`WHOLE`); with no slot map at all, one
background probe per cool-down runs redis-py's discovery, never a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from genai_api.store import budget
from genai_api.store.breaker import CircuitBreaker
from genai_api.store.cluster_client import owner, slot_of
from genai_api.store.refusals import PROBE, Refusals, refused

log = logging.getLogger("genai_api.store")

# RedisClusterException is not a RedisError: "cluster cannot be connected", "slot not covered".
FAILURES = (RedisError, RedisClusterException, OSError, asyncio.TimeoutError)
WHOLE = "cluster"  # the breaker of keyless operations and of an unknown slot map
WARM_PER_NODE = 16
WARM_SECONDS = 3.0
DISCOVERY_SECONDS = 5.0


class ClusterNodes:
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
        self._probes: dict[str, asyncio.Task[None]] = {}
        self._failures = 0
        self.last_failure: str | None = None
        self.shards_down: tuple[str, ...] = ()
        self.refusals = Refusals()  # writes refused for want of memory, by node
        self._probe_keys: dict[str, str] = {}  # node -> a `PROBE` key in one of its slots

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
    def full(self) -> tuple[str, ...]:
        """The primaries that refused a write for want of memory lately (`refusals.py`)."""
        return self.refusals.full()

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

    @property
    def discovery_seconds(self) -> float:
        """The first discovery also fetches the command table (`COMMAND`, ~100 KB): it gets
        more than one operation's deadline."""
        return max(2 * self.timeout, DISCOVERY_SECONDS)

    # --- health
    async def ping(self) -> bool:
        """True when at least one primary answers (the cache serves some keys); `shards_down`
        names the primaries that do not. Refreshes the slot map first when one is down, so a
        promoted replica counts as the primary it replaced."""
        try:
            async with asyncio.timeout(self.discovery_seconds):
                await self.client.initialize()
        except FAILURES as exc:
            self.breaker.trip()
            self._failures += 1
            self.last_failure = f"no node of the cluster answered: {type(exc).__name__}: {exc}"
            self.shards_down = (WHOLE,)
            return False
        down = await self._ping_primaries()
        if down:
            with contextlib.suppress(*FAILURES):
                async with asyncio.timeout(2 * self.timeout):
                    await self.client.nodes_manager.initialize(last_failed_node_name=down[0])
            down = await self._ping_primaries()
        primaries = self.client.get_primaries()
        self.shards_down = tuple(down)
        self.breaker.reset()
        full = [n for n in self.refusals.full() if n not in down]
        if full:
            await asyncio.gather(*(self._probe_write(n) for n in full))
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
        except FAILURES:
            breaker.trip()
            return False
        breaker.reset()
        return True

    async def _probe_write(self, name: str) -> None:
        """Node `name` was full lately: does it take a write again? (`PROBE`, in a slot of
        its own, changes nothing.)"""
        key = self._probe_key(name)
        if key is None:
            self.refusals.cleared(name)  # it serves no slot any more
            return
        try:
            async with asyncio.timeout(2 * self.timeout):
                await self.client.lpushx(key, b"")
        except FAILURES as exc:
            if refused(exc):
                self.refusals.still(name)
            return
        self.refusals.cleared(name)

    def _probe_key(self, name: str) -> str | None:
        """A `PROBE` key that node `name` serves (a node holds a third of the slots or so:
        a few tries), None when it serves none."""
        key = self._probe_keys.get(name)
        node = None if key is None else owner(self.client, key)
        if node is not None and node.name == name:
            return key
        for i in range(4096):
            key = f"{PROBE}:{i}"
            node = owner(self.client, key)
            if node is not None and node.name == name:
                self._probe_keys[name] = key
                return key
        return None

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
        with contextlib.suppress(*FAILURES):
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

    async def close_probes(self) -> None:
        for task in list(self._probes.values()):
            task.cancel()
        await asyncio.gather(*self._probes.values(), return_exceptions=True)
