"""The store on a Redis Cluster: redis-py's `RedisCluster`, a breaker per node.

Why per node: on one server a failure means the cache is down; in a cluster it means one
shard is. So every operation is guarded by the breaker and the request's budget of the node
serving its key (`available`, `guarded(key=...)`): a dead or hung primary opens its own
breaker, its keys BYPASS, and keys on healthy nodes are served as before. Operations that
span nodes (an embedding batch's MGET and writes, `DELETE /v1/cache`) run one pipeline per
node, nodes in parallel, each behind that node's breaker: a sick node costs the keys it holds.

Which node a key lives on, the breakers, the probes that find a failover and `ping` are the
nodes' (`cluster_nodes.py`); this module is the operations.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar, cast

from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError

from genai_api.errors import CacheUnavailable, WriteRefused
from genai_api.store import budget
from genai_api.store.cluster_client import ClusterScript, node_pubsub, owner
from genai_api.store.cluster_nodes import FAILURES as _FAILURES
from genai_api.store.cluster_nodes import WHOLE, ClusterNodes
from genai_api.store.redis import SLIDE_READ, key_text
from genai_api.store.refusals import refused

T = TypeVar("T")
# ARGV: keys one node serves, in any slots. No writes: any node of the shard may run it.
_NODE_READ = """#!lua flags=no-writes,allow-cross-slot-keys
local out = {}
for i = 1, #ARGV do
  out[i] = redis.call('get', ARGV[i])
end
return out
"""
# The same, giving each entry found the TTL in ARGV[1] (a sliding model's embeddings, as
# the one-server store's `_READ_EXTEND`); writes, so it runs on the primary. `allow-oom`: a
# full primary would refuse the whole script (a shebang without `no-writes`), and these are
# hits; PEXPIRE of a key that has a TTL takes no memory.
_NODE_READ_EXTEND = """#!lua flags=allow-cross-slot-keys,allow-oom
local out = {}
for i = 2, #ARGV do
  local value = redis.call('get', ARGV[i])
  if value then
    redis.call('pexpire', ARGV[i], ARGV[1])
  end
  out[i - 1] = value
end
return out
"""


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


class ClusterStore(ClusterNodes):
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
        super().__init__(
            client,
            timeout=timeout,
            max_connections=max_connections,
            breaker_seconds=breaker_seconds,
            breaker_failures=breaker_failures,
        )
        # redis-py's node pools raise past `max_connections` instead of waiting: operations
        # wait here for a turn (within their deadline), as on one server's blocking pool. A
        # few connections are left for redis-py's own topology queries.
        self._turns = max(1, max_connections - 4)
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._next_pubsub = 0
        self._node_scripts = True  # `read_node`'s script runs here (Redis 7 or later)

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
            if refused(exc):  # the node answered: full, not failing (its reads go on)
                breaker.success()
                raise self.refuse(exc, name) from exc
            if spending is not None:
                _spend(spending, name)
            self._failures += 1
            breaker.failure(started)
            raise CacheUnavailable(f"redis node {name}: {type(exc).__name__}: {exc}") from exc
        breaker.success()
        return result

    def refuse(self, exc: BaseException, name: str) -> WriteRefused:
        """Count a write node `name` refused for want of memory; the error to raise."""
        self.refusals.refused(name)
        return WriteRefused(f"redis node {name} is full, write refused (reads go on): {exc}")

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
    async def get(self, key: str, *, slide_ms: int = 0) -> bytes | None:
        """The stored bytes; with `slide_ms`, the entry's TTL is set back in the same step
        (the one-server store's `SLIDE_READ`: one key, so one slot)."""
        if slide_ms:
            value = await self.guarded(
                lambda: self.client.eval(SLIDE_READ, 1, key, slide_ms), key=key
            )
        else:
            value = await self.guarded(lambda: self.client.get(key), key=key)
        return cast(bytes | None, value)

    async def get_many(self, keys: Sequence[str], *, extend_ms: int = 0) -> list[bytes | None]:
        """One read per node, nodes in parallel (`read_node`). Keys on a node that fails
        read as missing, that node's failure spends the request's budget for it, so its keys
        go on without the cache (BYPASS); when every node fails this raises
        `CacheUnavailable`."""
        if not keys:
            return []
        read = self.read_node if not extend_ms else partial(self.read_node, extend_ms=extend_ms)
        values, failure = await self._per_node(keys, read)
        if failure is not None and all(v is None for v in values):
            raise failure
        return values

    async def read_node(self, keys: list[str], *, extend_ms: int = 0) -> list[Any]:
        """The values of `keys`, all served by one node: one script there (`_NODE_READ`),
        else one MGET per slot in a pipeline (redis-py's `mget_nonatomic`).

        Why a script: redis-py sends a command per slot, and the inputs of an embedding batch
        are in a slot each: 64 inputs were 64 commands to pack, route and parse, ~1.6 ms of
        CPU; the script is one command per node (~0.5 ms). It reads keys it does not declare
        (Redis 7's `allow-cross-slot-keys`), so it goes to the node the slot map names: a key
        that moved meanwhile is an error there (redis-py's way then finds it), or a miss
        (the flight's claim, which declares its keys, reads it where it is). A server that
        cannot run it (before Redis 7) is read per slot from then on."""
        extending = extend_ms > 0
        node = (
            owner(self.client, keys[0])
            if self._node_scripts and (len(keys) > 1 or extending)
            else None
        )
        if node is not None:
            try:
                if extending:  # sliding: the hit gives each entry its TTL again
                    values = await self.client.execute_command(
                        "EVAL", _NODE_READ_EXTEND, 0, extend_ms, *keys, target_nodes=node
                    )
                else:
                    values = await self.client.execute_command(
                        "EVAL", _NODE_READ, 0, *keys, target_nodes=node
                    )
                return cast(list[Any], values)
            except ResponseError as exc:
                if "shebang" in str(exc) or "compiling script" in str(exc):
                    self._node_scripts = False
        return cast(list[Any], await self.client.mget_nonatomic(keys))

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

        async def unlink(keys: list[str]) -> int:
            return int(await self.client.unlink(*keys))

        return await self.sweep_matching(pattern, unlink)

    async def sweep_matching(
        self, pattern: str, each: Callable[[list[str]], Awaitable[int]]
    ) -> int:
        """SCAN every primary (in parallel) in pages, `each(page)` for each page (its keys all
        on that primary; answers summed). A primary that fails is reported after the others
        are done."""
        primaries = self.client.get_primaries() if self.client.nodes_manager.slots_cache else []
        if not primaries:
            await self.guarded(self.client.initialize)  # raises when the cluster is away
            primaries = self.client.get_primaries()
        counts = await asyncio.gather(
            *(self._sweep_on(node, pattern, each) for node in primaries), return_exceptions=True
        )
        failures = [c for c in counts if isinstance(c, BaseException)]
        if failures:
            raise failures[0]
        return sum(int(c) for c in counts if not isinstance(c, BaseException))

    async def _sweep_on(
        self, node: ClusterNode, pattern: str, each: Callable[[list[str]], Awaitable[int]]
    ) -> int:
        async def run() -> int:
            done, cursor = 0, 0
            while True:
                async with asyncio.timeout(self.timeout):
                    # A cluster SCAN answers a cursor per node asked: {node name: cursor}.
                    cursors, keys = await self.client.scan(
                        cursor, match=pattern, count=1000, target_nodes=node
                    )
                cursor = int(cast(dict[str, Any], cursors)[node.name])
                if keys:
                    async with asyncio.timeout(self.timeout * (1 + len(keys) // 256)):
                        done += await each([key_text(k) for k in keys])
                if not cursor:
                    return done

        return await self._call(run, node, bounded=False)

    async def close(self) -> None:
        await self.close_probes()
        with contextlib.suppress(*_FAILURES):
            await self.client.aclose()


def _spend(spending: budget.Budget, name: str) -> None:
    if spending.nodes is None:
        spending.nodes = set()
    spending.nodes.add(name)
