"""The recorder on a real Redis: batching off the hot path, retries that count once, buckets."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import redis.asyncio as aioredis

from genai_api.metrics import Metrics
from genai_api.savings.accounting import Accounting, CacheStatus
from genai_api.savings.backends import HOUR, MINUTE, Batch, Interval, Totals
from genai_api.savings.redis import RedisStats
from tests.redis_server import RedisServer
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
    # The restarted Redis kept nothing (no persistence): what it holds is exactly the batch
    # that failed plus the one recorded after, each counted once.
    assert (doc["hits"], doc["misses"], doc["errors"]) == (2, 0, 1)
    assert (doc["cost_saved_usd"], doc["cost_spent_usd"]) == (Decimal("0.5"), 0)
    assert accounting.flush_failures == 1
    failures = metrics.backend_errors.labels("stats")._value.get()
    assert failures == 1


async def test_redis_buckets_per_minute_and_hour_expire_on_schedule(
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
    expire_minute = await client.expiretime(f"{ns}:stats:minute:{int(T0)}")
    expire_hour = await client.expiretime(f"{ns}:stats:hour:{int(T0)}")
    assert expire_minute == int(T0) + MINUTE.seconds + MINUTE.window
    assert expire_hour == int(T0) + HOUR.seconds + HOUR.window
    assert await client.ttl(f"{ns}:stats:total") == -1  # totals never expire


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
