"""redis-py's own asyncio `RedisCluster`, configured for a cache that must never stall.

The choices, and why:
- No `socket_timeout`: each operation is bounded by the store's own deadline (`asyncio.timeout`
  around the whole call), as on one server (`redis.py` says why: a per-command timer costs a
  task per command). A cancelled read disconnects only its own connection; redis-py does not
  take a cancellation for a node failure, so a hung node never triggers a topology refresh
  or touches another node's connections (`cluster.md`: the known redis-py trap).
- One retry, no backoff: a command that meets a dead primary asks redis-py for a topology
  refresh, and the retry runs it (a promoted replica is found on the next request); more
  retries would spend the request's deadline on a node that is gone.
- `socket_connect_timeout=REDIS_TIMEOUT`: connecting is bounded on its own, since the
  topology refresh redis-py runs inside a command connects to nodes the store never chose.
- TLS (`rediss://`): one SSL context per client (`tls.py`), as on one server.

`ClusterScript` loads a script on the one node that lacks it (a replica promoted since the
script was loaded): redis-py's script loads it on every primary, which fails while any
primary is down. `node_pubsub` opens a classic pub/sub connection to one node: a cluster
delivers every PUBLISH to every node, so one subscription per process hears the whole
cluster (`docs/cluster.md` has the measurements behind choosing PUBLISH over SPUBLISH).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.crc import key_slot
from redis.exceptions import NoScriptError

from genai_api.store.tls import shared_context_ssl_connection

_TLS_OPTIONS = (
    "ssl_ca_certs",
    "ssl_ca_data",
    "ssl_cert_reqs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_check_hostname",
    "ssl_min_version",
    "ssl_ciphers",
)


def cluster_client(
    options: dict[str, Any],
    *,
    seeds: Sequence[tuple[str, int]],
    timeout: float,
    max_connections: int,
) -> RedisCluster:
    """A client that discovers the cluster from `options`' node (`REDIS_URL`, or the
    host/port parts) and the extra `seeds` (`REDIS_CLUSTER_NODES`); `max_connections` is
    per node."""
    tls = options.get("connection_class") is aioredis.SSLConnection
    nodes = [(str(options["host"]), int(options["port"])), *seeds]
    client = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in dict.fromkeys(nodes)],
        username=options.get("username"),
        password=options.get("password"),
        ssl=tls,
        max_connections=max_connections,
        socket_timeout=None,
        socket_connect_timeout=timeout,
        health_check_interval=0,
        retry=Retry(NoBackoff(), 1),
        **{name: options[name] for name in _TLS_OPTIONS if name in options},
    )
    if tls:
        shared = shared_context_ssl_connection()
        client.nodes_manager.connection_kwargs["connection_class"] = shared  # nodes found later
        for node in client.nodes_manager.startup_nodes.values():
            node.connection_class = shared
    return client


@lru_cache(maxsize=16_384)
def slot_of(key: str) -> int:
    """`key`'s hash slot. Cached: a hot key's slot is asked on every hit (is its node's
    breaker closed?), and CRC16 through redis-py costs ~1.5 µs, the cache ~0.1 µs."""
    return key_slot(key.encode())


def owner(client: RedisCluster, key: str) -> ClusterNode | None:
    """The primary serving `key` in the client's slot map; None before the map is known."""
    nodes = client.nodes_manager.slots_cache.get(slot_of(key))
    return nodes[0] if nodes else None


class ClusterScript(AsyncScript):
    """A Lua script on a cluster: EVALSHA routed by its keys (one slot), and on NOSCRIPT a
    SCRIPT LOAD on the node serving them only, then EVALSHA again."""

    async def __call__(
        self,
        keys: Sequence[Any] | None = None,
        args: Iterable[Any] | None = None,
        client: Any = None,
    ) -> Any:
        keys, args = list(keys or []), list(args or [])
        client = client if client is not None else self.registered_client
        if isinstance(client, ClusterPipeline):
            return client.evalsha(self.sha, len(keys), *keys, *args)
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            node = owner(client, str(keys[0])) if keys else None
            if node is None:
                await client.script_load(self.script)
            else:
                await client.execute_command("SCRIPT LOAD", self.script, target_nodes=node)
            return await client.evalsha(self.sha, len(keys), *keys, *args)


def node_pubsub(node: ClusterNode) -> PubSub:
    """A classic pub/sub connection to `node`, with the cluster's credentials and TLS; the
    connection closes with the pub/sub (`PubSub.aclose`)."""
    kwargs = {k: v for k, v in node.connection_kwargs.items() if k not in ("response_callbacks",)}
    kwargs.pop("max_connections", None)
    kwargs.pop("himport_registry", None)
    pool = aioredis.ConnectionPool(connection_class=node.connection_class, **kwargs)
    return aioredis.Redis(connection_pool=pool).pubsub()
