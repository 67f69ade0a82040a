"""The recorder on a real Redis: batching off the hot path, retries that count once, buckets."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from genai_api.metrics import Metrics
from genai_api.savings.accounting import Accounting, CacheStatus
from genai_api.savings.backends import HOUR, MINUTE, Batch, Interval, Totals
from genai_api.savings.redis import WRITER_TTL, RedisStats
from tests.redis_server import RedisServer
from tests.redis_topologies import RedisClusterServers
from tests.test_stats_backends import T0, Clock

pytestmark = pytest.mark.redis


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    c = aioredis.from_url(redis_url)
    yield c
    await c.aclose()


def namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


async def test_recording_writes_nothing_until_the_flush(client: aioredis.Redis) -> None:
    ns = namespace()
    accounting = Accounting(RedisStats(client, ns), flush_interval=3600)
    accounting.record("m", CacheStatus.HIT, prompt_tokens=3, cost=Decimal("0.000001"))
    assert await client.hgetall(f"{ns}:stats:total") == {}
    assert await accounting.flush()
    total = await client.hgetall(f"{ns}:stats:total")
    assert total[b"hits"] == b"1" and total[b"saved_prompt"] == b"3"
    assert total[b"saved_pusd"] == b"1000000"


async def test_failed_flush_keeps_the_counts_for_the_next_one(
    redis_server: RedisServer,
) -> None:
    client = aioredis.from_url(redis_server.url, socket_timeout=0.5)
    metrics = Metrics(["m"])
    accounting = Accounting(RedisStats(client, namespace()), meter=metrics)
    try:
        accounting.record("m", CacheStatus.MISS, cost=Decimal("0.5"))
        assert await accounting.flush()
        redis_server.stop()
        accounting.record("m", CacheStatus.HIT, cost=Decimal("0.25"))
        accounting.record_error("m")
        assert not await accounting.flush()
        accounting.record("m", CacheStatus.HIT, cost=Decimal("0.25"))
        redis_server.start()
        assert await accounting.flush()
        doc = await accounting.snapshot()
    finally:
        await client.aclose()
    # The restarted Redis kept nothing (no persistence), and the process restored what it had
    # seen there (the miss) like an evicted hash, then added the batch that failed and the
    # one recorded after, each counted once.
    assert (doc["hits"], doc["misses"], doc["errors"]) == (2, 1, 1)
    assert (doc["cost_saved_usd"], doc["cost_spent_usd"]) == (Decimal("0.5"), Decimal("0.5"))
    assert accounting.backend.restores >= 1  # type: ignore[attr-defined]
    assert accounting.flush_failures == 1
    failures = metrics.backend_errors.labels("stats")._value.get()
    assert failures == 1


async def test_redis_buckets_per_minute_and_hour_are_deleted_on_schedule(
    client: aioredis.Redis,
) -> None:
    ns, clock = namespace(), Clock()
    accounting = Accounting(RedisStats(client, ns), clock=clock)
    accounting.record("m", CacheStatus.HIT, completion_tokens=5)
    clock.t += 61
    accounting.record("m", CacheStatus.MISS)
    await accounting.flush()
    doc = await accounting.snapshot("minute", 3)
    assert [(p["t"], p["hits"], p["misses"]) for p in doc["series"]["points"]] == [
        (int(T0) - 60, 0, 0),
        (int(T0), 1, 0),
        (int(T0) + 60, 0, 1),
    ]
    hours = (await accounting.snapshot("hour", 2))["series"]["points"]
    assert [(p["hits"], p["misses"]) for p in hours] == [(0, 0), (1, 1)]
    # No stats key has a TTL (a volatile-* policy never evicts it): the flush itself deletes
    # a bucket once it is due, from the index of due times.
    keys = [k async for k in client.scan_iter(match=f"{ns}:stats:*")]
    assert len(keys) == 8  # total, models, model, index, writer, 2 minutes, 1 hour
    assert [await client.ttl(k) for k in keys] == [-1] * len(keys)
    minute, hour = f"{ns}:stats:minute:{int(T0)}", f"{ns}:stats:hour:{int(T0)}"
    index = f"{ns}:stats:index"
    assert await client.zscore(index, minute) == int(T0) + MINUTE.seconds + MINUTE.window
    assert await client.zscore(index, hour) == int(T0) + HOUR.seconds + HOUR.window
    clock.t = T0 + MINUTE.seconds + MINUTE.window - 1
    accounting.record("m", CacheStatus.HIT)
    assert await accounting.flush()
    assert await client.exists(minute) == 1  # due in a second
    clock.t += 1
    accounting.record("m", CacheStatus.HIT)
    assert await accounting.flush()
    assert await client.exists(minute) == 0 and await client.zscore(index, minute) is None
    assert await client.exists(f"{ns}:stats:minute:{int(T0) + 60}") == 1  # a minute later
    assert await client.exists(hour) == 1  # hours are kept 30 days
    assert (await accounting.snapshot())["hits"] == 3  # totals are never deleted


async def test_a_writer_idle_for_a_day_is_deleted_by_another_ones_flush(
    client: aioredis.Redis,
) -> None:
    ns, clock = namespace(), Clock()
    idle, busy = (Accounting(RedisStats(client, ns), clock=clock) for _ in range(2))
    idle.record("m", CacheStatus.HIT)
    assert await idle.flush()
    writer = f"{ns}:stats:writer:{idle.backend.writer}"  # type: ignore[attr-defined]
    assert await client.get(writer) == b"1" and await client.ttl(writer) == -1
    clock.t += WRITER_TTL
    busy.record("m", CacheStatus.HIT)
    assert await busy.flush()
    assert await client.exists(writer) == 0
    assert await client.zscore(f"{ns}:stats:index", writer) is None


class AnswerLost:
    """Redis applies the batch, but the answer never arrives (a timeout, for the caller)."""

    name = "redis"

    def __init__(self, inner: RedisStats) -> None:
        self.inner = inner
        self.lose_next = True

    async def apply(self, batch: Batch, now: float) -> None:
        await self.inner.apply(batch, now)
        if self.lose_next:
            self.lose_next = False
            raise TimeoutError("answer lost")

    async def read(self) -> Totals:
        return await self.inner.read()

    async def read_series(self, interval: Interval, starts: list[int]) -> list[Counter[str]]:
        return await self.inner.read_series(interval, starts)


async def test_a_retried_batch_that_had_reached_redis_counts_once(
    client: aioredis.Redis,
) -> None:
    accounting = Accounting(AnswerLost(RedisStats(client, namespace())))
    accounting.record("m", CacheStatus.HIT, cost=Decimal("0.25"))
    assert not await accounting.flush()  # applied, but the recorder cannot know
    accounting.record("m", CacheStatus.HIT, cost=Decimal("0.25"))
    assert await accounting.flush()  # the lost batch again (skipped), then the new one
    doc = await accounting.snapshot()
    assert (doc["hits"], doc["cost_saved_usd"]) == (2, Decimal("0.5"))


async def test_two_writers_never_skip_each_other(client: aioredis.Redis) -> None:
    ns = namespace()
    one, two = Accounting(RedisStats(client, ns)), Accounting(RedisStats(client, ns))
    for accounting in (one, two, one):
        accounting.record("m", CacheStatus.MISS, cost=Decimal("0.1"))
        assert await accounting.flush()
    assert (await two.snapshot())["cost_spent_usd"] == Decimal("0.3")


class ReadOnly(AnswerLost):
    """A replica during a failover: reads answer, writes fail."""

    async def apply(self, batch: Batch, now: float) -> None:
        raise TimeoutError("READONLY")


async def test_counts_not_yet_written_still_show_in_this_process(
    client: aioredis.Redis,
) -> None:
    ns = namespace()
    writer = Accounting(RedisStats(client, ns))
    writer.record("m", CacheStatus.MISS, cost=Decimal("0.1"))
    assert await writer.flush()
    stuck = Accounting(ReadOnly(RedisStats(client, ns)), clock=Clock())
    stuck.record("m", CacheStatus.HIT, prompt_tokens=7, cost=Decimal("0.1"))
    assert not await stuck.flush()
    stuck.record("m", CacheStatus.HIT, prompt_tokens=7, cost=Decimal("0.1"))
    doc = await stuck.snapshot("minute", 1)
    assert (doc["hits"], doc["misses"], doc["cost_saved_usd"]) == (2, 1, Decimal("0.2"))
    assert doc["by_model"]["m"]["tokens_saved"]["prompt"] == 14
    assert doc["series"]["points"][0]["hits"] == 2  # the fake clock's minute: local counts
    assert (await writer.snapshot())["hits"] == 0  # nothing of it reached Redis


# Eviction under an allkeys-* policy, simulated here by deleting keys (what an eviction does);
# tests/test_eviction.py evicts for real under maxmemory.


async def test_an_evicted_hash_is_restored_from_the_last_view_of_a_process(
    client: aioredis.Redis,
) -> None:
    ns = namespace()
    accounting = Accounting(RedisStats(client, ns))
    accounting.record("m", CacheStatus.HIT, prompt_tokens=5, cost=Decimal("0.5"))
    accounting.record("n", CacheStatus.MISS, cost=Decimal("0.25"))
    assert await accounting.flush()
    before = await accounting.snapshot()
    await client.delete(f"{ns}:stats:total", f"{ns}:stats:model:m", f"{ns}:stats:models")
    accounting.record("m", CacheStatus.HIT, prompt_tokens=5, cost=Decimal("0.5"))
    assert await accounting.flush()  # restores, then adds the new hit
    after = await accounting.snapshot()
    assert (after["hits"], after["misses"]) == (2, 1)
    assert after["since"] == before["since"]
    assert after["by_model"]["m"]["tokens_saved"]["prompt"] == 10
    assert after["by_model"]["m"]["cost_saved_usd"] == Decimal("1")
    assert after["by_model"]["n"]["misses"] == 1
    assert accounting.backend.restores == 3  # type: ignore[attr-defined]


async def test_every_process_adds_what_it_saw_so_a_restore_catches_up_to_exact(
    client: aioredis.Redis,
) -> None:
    ns = namespace()
    one, two = Accounting(RedisStats(client, ns)), Accounting(RedisStats(client, ns))
    one.record("m", CacheStatus.HIT)
    assert await one.flush()
    for _ in range(3):
        two.record("m", CacheStatus.HIT)
    assert await two.flush()  # the last write before the eviction: only `two` saw 4
    await client.delete(f"{ns}:stats:total", f"{ns}:stats:model:m")
    one.record("m", CacheStatus.MISS)
    assert await one.flush()  # restores from its older view (1 hit), adds its miss
    lagging = await one.snapshot()
    assert (lagging["hits"], lagging["misses"]) == (1, 1)  # behind, never ahead
    assert await two.flush()  # nothing pending: still raises the hashes to what it saw
    exact = await one.snapshot()
    assert (exact["hits"], exact["misses"]) == (4, 1)
    assert exact["by_model"]["m"]["hits"] == 4


async def test_a_total_restored_from_an_older_view_is_never_below_a_model(
    client: aioredis.Redis,
) -> None:
    ns = namespace()
    one, two = Accounting(RedisStats(client, ns)), Accounting(RedisStats(client, ns))
    one.record("m", CacheStatus.HIT)
    assert await one.flush()
    for _ in range(5):
        two.record("m", CacheStatus.HIT)
    assert await two.flush()
    await client.delete(f"{ns}:stats:total")  # the model hash survives with 6 hits
    doc = await one.snapshot()  # `one` saw 1: the total is raised to the model's 6
    assert doc["hits"] == doc["by_model"]["m"]["hits"] == 6


async def test_a_reset_by_the_operator_is_not_undone(client: aioredis.Redis) -> None:
    ns = namespace()
    accounting = Accounting(RedisStats(client, ns))
    accounting.record("m", CacheStatus.HIT)
    assert await accounting.flush()
    await client.delete(*[k async for k in client.scan_iter(match=f"{ns}:stats:*")])
    await client.set(f"{ns}:stats:reset", "1")
    accounting.record("m", CacheStatus.MISS)
    assert await accounting.flush()
    doc = await accounting.snapshot()
    assert (doc["hits"], doc["misses"]) == (0, 1)
    await client.delete(f"{ns}:stats:total")  # an eviction after the reset is restored
    assert (await accounting.snapshot())["misses"] == 1


async def test_counters_written_by_an_older_version_are_adopted_without_a_restore(
    client: aioredis.Redis,
) -> None:
    ns = namespace()
    await client.hset(f"{ns}:stats:total", mapping={"hits": 7, "since": 1_700_000_000})
    await client.hset(f"{ns}:stats:model:m", mapping={"hits": 7})
    await client.sadd(f"{ns}:stats:models", "m")
    old_minute = f"{ns}:stats:minute:{int(T0)}"
    await client.hset(old_minute, "hits", 7)
    await client.expireat(old_minute, int(T0) + 3600)
    accounting = Accounting(RedisStats(client, ns), clock=Clock())
    assert (await accounting.snapshot())["hits"] == 7
    accounting.record("m", CacheStatus.HIT)
    assert await accounting.flush()
    assert await accounting.flush()  # an idle sync with the adopted view: nothing to restore
    doc = await accounting.snapshot()
    assert (doc["hits"], doc["by_model"]["m"]["hits"]) == (8, 8)
    assert accounting.backend.restores == 0  # type: ignore[attr-defined]
    assert await client.ttl(old_minute) == -1  # written again: the index deletes it now


async def test_a_read_never_sees_a_model_above_the_total_while_flushes_run(
    client: aioredis.Redis,
) -> None:
    ns = namespace()
    models = [f"m{i}" for i in range(8)]
    writers = [Accounting(RedisStats(client, ns)) for _ in range(4)]
    reader = RedisStats(client, ns)
    stop = asyncio.Event()

    async def write(accounting: Accounting) -> None:
        while not stop.is_set():
            for model in models:
                accounting.record(model, CacheStatus.HIT)
            assert await accounting.flush()

    tasks = [asyncio.create_task(write(w)) for w in writers]
    reads = 0
    try:
        deadline = asyncio.get_running_loop().time() + 1.0
        while asyncio.get_running_loop().time() < deadline:
            totals = await reader.read()
            for model, counts in totals.models.items():
                assert counts["hits"] <= totals.totals["hits"], (model, reads)
            assert sum(c["hits"] for c in totals.models.values()) == totals.totals["hits"]
            reads += 1
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert reads > 20 and (await reader.read()).totals["hits"] > 8 * len(writers)


async def test_on_a_cluster_restores_and_deletions_stay_in_the_stats_slot(
    redis_cluster: RedisClusterServers,
) -> None:
    """The script reads, restores and deletes keys it builds itself (model hashes, due
    buckets): all carry the stats hash tag, so a cluster runs it on one node unchanged."""
    client = RedisCluster.from_url(redis_cluster.url)
    ns, clock = namespace(), Clock()
    try:
        one, two = (Accounting(RedisStats(client, ns), clock=clock) for _ in range(2))
        prefix = f"{ns}:{{{ns}:stats}}"
        one.record("m", CacheStatus.HIT)
        two.record("n", CacheStatus.MISS)
        assert await one.flush() and await two.flush()
        await client.delete(f"{prefix}:total")
        await client.delete(f"{prefix}:model:m")
        await client.delete(f"{prefix}:models")
        assert await two.flush() and await one.flush()  # each puts back what it saw
        doc = await two.snapshot()
        assert (doc["hits"], doc["misses"]) == (1, 1)
        assert {m: d["hits"] + d["misses"] for m, d in doc["by_model"].items()} == {"m": 1, "n": 1}
        restores = [a.backend.restores for a in (one, two)]  # type: ignore[attr-defined]
        assert restores[1] >= 2  # the totals and `m` (and the set), put back by `two` first
        clock.t += MINUTE.seconds + MINUTE.window
        one.record("m", CacheStatus.HIT)
        assert await one.flush()
        assert await client.exists(f"{prefix}:minute:{int(T0)}") == 0  # deleted when due
        assert await client.exists(f"{prefix}:hour:{int(T0)}") == 1
    finally:
        await client.aclose()


async def test_a_restore_is_one_warning_a_minute_naming_the_policy_to_run(
    client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    ns = namespace()
    accounting = Accounting(RedisStats(client, ns))
    for _ in range(3):
        accounting.record("m", CacheStatus.HIT)
        assert await accounting.flush()
        await client.delete(f"{ns}:stats:total")
    assert (await accounting.snapshot())["hits"] == 3
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "volatile-lru" in warnings[0].getMessage()
    assert accounting.backend.restores == 3  # type: ignore[attr-defined]
