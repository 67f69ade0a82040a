"""The cluster store's own choices, on the session's 3-primary + 3-replica cluster: one read
per node for a batch, its fallback, per-node groups, and the savings keys in one slot."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.crc import key_slot

from genai_api.store import cluster as cluster_module
from genai_api.store.cluster import ClusterStore
from genai_api.store.cluster_client import owner
from genai_api.store.factory import build_redis
from tests.conftest import make_settings
from tests.redis_topologies import RedisClusterServers, cli

pytestmark = pytest.mark.redis


@pytest.fixture
async def store(redis_cluster: RedisClusterServers) -> AsyncIterator[ClusterStore]:
    settings = make_settings(
        cache_backend="redis", redis_mode="cluster", redis_url=redis_cluster.url
    )
    built = build_redis(settings)
    assert isinstance(built, ClusterStore)
    assert await built.ping()
    try:
        yield built
    finally:
        await built.close()


def _calls(ports: list[int], command: str) -> int:
    total = 0
    for port in ports:
        for line in cli(port, "INFO", "commandstats").splitlines():
            if line.startswith(f"cmdstat_{command}:"):
                total += int(line.split("calls=")[1].split(",")[0])
    return total


def _keys(n: int) -> list[str]:
    run = uuid.uuid4().hex[:8]
    return [f"t{run}:e:emb:t:m:-:{{{uuid.uuid4().hex}}}" for _ in range(n)]


async def test_a_batch_is_read_with_one_command_per_node(
    store: ClusterStore, redis_cluster: RedisClusterServers
) -> None:
    keys = _keys(30)
    await store.set_many([(k, k.encode(), 60) for k in keys[::2]])
    ports = redis_cluster.primaries()
    evals, mgets = _calls(ports, "eval"), _calls(ports, "mget")
    values = await store.get_many(keys)
    assert values == [k.encode() if i % 2 == 0 else None for i, k in enumerate(keys)]
    assert len({key_slot(k.encode()) for k in keys}) > 20  # a slot each, nearly
    assert _calls(ports, "eval") - evals == 3  # one script per node, whatever the slots
    assert _calls(ports, "mget") == mgets  # (the script's own GETs count as `get`)


async def test_a_server_that_cannot_run_the_read_script_is_read_per_slot(
    store: ClusterStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster_module, "_NODE_READ", "#!lua flags=no-such-flag\nreturn {}\n")
    keys = _keys(12)
    await store.set_many([(k, b"v", 60) for k in keys])
    assert await store.get_many(keys) == [b"v"] * 12
    assert not store._node_scripts  # told once: MGETs per slot from now on
    assert await store.get_many(keys) == [b"v"] * 12


async def test_a_key_the_slot_map_puts_on_the_wrong_node_is_still_read(
    store: ClusterStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = _keys(12)
    await store.set_many([(k, b"v", 60) for k in keys])
    nodes = store.client.get_primaries()

    def stale(client: Any, key: str) -> Any:  # a slot map older than a resharding
        right = owner(client, key)
        return next(n for n in nodes if n != right)

    monkeypatch.setattr(cluster_module, "owner", stale)
    group = [k for k in keys if owner(store.client, k) == owner(store.client, keys[0])]
    assert await store.read_node(group) == [b"v"] * len(group)  # redis-py found them
    assert store._node_scripts  # a moved key is not a server without scripts


async def test_groups_follow_slots_and_nodes(store: ClusterStore) -> None:
    keys = _keys(40)
    by_node = store.node_groups(keys)
    assert sorted(k for g in by_node for k in g) == sorted(keys) and len(by_node) == 3
    for group in by_node:
        assert len({owner(store.client, k) for k in group}) == 1
    for group in store.slot_groups(keys):
        assert len({key_slot(k.encode()) for k in group}) == 1
    lock = "t:lock:emb:t:m:-:{" + keys[0].rsplit("{", 1)[1]
    assert store.slot_groups([keys[0], lock]) == [[keys[0], lock]]  # an entry and its lease
