"""A cache Redis under `maxmemory`, per eviction policy: only cache entries are ever lost.

Real evictions on a throwaway redis-server with a few MB of `maxmemory`: two gateways (the
app's own lifespan, HTTP through the ASGI transport, the provider a respx mock) take big
embedding batches that overflow it, and chat requests for two models. A reader samples
`/v1/cache/stats` all the while. Under every policy: no request fails, the reader never
sees a count go backwards nor a model above the totals, and once the gateways have flushed
the counts are exactly the requests made. Under `volatile-*` (every entry has a TTL, no stats
key has one) Redis never evicts a stats key at all; under `allkeys-*` it does, and the
gateways restore them (`genai_api.savings.redis`).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import respx

from tests.conftest import UPSTREAM, Running, chat_response, make_settings, running, stats_doc
from tests.embeddings_provider import MODEL, Provider
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis

MAXMEMORY = "8mb"
DIMS = 1536  # 6 KB a vector, as OpenAI's: a few batches overflow MAXMEMORY
BATCHES, INPUTS = 16, 200
CHATS = 40
CHAT_MODELS = ("gpt-4o-mini", "gpt-4o")
STATUSES = ("hits", "misses", "coalesced", "bypassed", "semantic_hits")
NUMBERS = ("hits", "misses", "coalesced", "bypassed", "errors", "provider_errors")

# Every policy an operator may run but `noeviction` (refused writes: tests/test_redis_full.py).
POLICIES = (
    "volatile-lru",
    "volatile-lfu",
    "volatile-ttl",
    "volatile-random",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
)


@pytest.fixture
def small_redis(redis_binary: None, tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, extra_args=["--maxmemory", MAXMEMORY]).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def upstream_mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=UPSTREAM, assert_all_called=False) as router:
        router.post("/embeddings").mock(side_effect=Provider(dims=DIMS))
        router.post("/chat/completions").mock(
            side_effect=lambda request: httpx.Response(200, json=chat_response())
        )
        yield router


def answered(doc: dict[str, Any]) -> int:
    return sum(int(doc[name]) for name in STATUSES)


class Sampler:
    """Reads `/v1/cache/stats` in a loop and checks every document against the last one."""

    def __init__(self, gw: Running) -> None:
        self.gw = gw
        self.last: dict[str, Any] | None = None
        self.reads = 0
        self.stop = asyncio.Event()

    def check(self, doc: dict[str, Any]) -> None:
        for model, counts in doc["by_model"].items():
            for name in NUMBERS:  # a model never above the totals
                assert counts[name] <= doc[name], (model, name, counts[name], doc[name])
        if self.last is not None:  # nothing ever goes backwards
            for name in NUMBERS:
                assert doc[name] >= self.last[name], (name, doc[name], self.last[name])
            for model, before in self.last["by_model"].items():
                now = doc["by_model"].get(model)
                assert now is not None, (
                    f"{model} vanished from the stats",
                    before,
                    sorted(doc["by_model"]),
                    sorted(self.gw.gateway.accounting.backend.seen),
                )
                for name in NUMBERS:
                    assert now[name] >= before[name], (model, name, now[name], before[name])
        self.last = doc
        self.reads += 1

    async def run(self) -> None:
        while not self.stop.is_set():
            self.check(stats_doc(await self.gw.http.get("/v1/cache/stats")))
            await asyncio.sleep(0.02)


async def embed(gw: Running, inputs: list[str]) -> None:
    answer = await gw.http.post(
        "/v1/embeddings",
        json={"model": MODEL, "input": inputs, "encoding_format": "base64"},
        headers={"Authorization": "Bearer client-key"},
    )
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["data"]) == len(inputs)


async def chat(gw: Running, model: str, prompt: int) -> None:
    answer = await gw.http.post(
        "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": f"prompt {prompt}"}]},
        headers={"Authorization": "Bearer client-key"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-cache"] in ("HIT", "MISS", "COALESCED", "BYPASS")


async def embedding_stream(*gateways: Running) -> None:
    """The batches one after another (over a few flushes), two gateways at a time."""
    pending = list(batches())
    while pending:
        now, pending = pending[: len(gateways)], pending[len(gateways) :]
        await asyncio.gather(*(embed(gw, batch) for gw, batch in zip(gateways, now, strict=False)))


async def chat_stream(*gateways: Running) -> None:
    pick = itertools.cycle(gateways)
    for i in range(CHATS):
        await chat(next(pick), CHAT_MODELS[i % 2], i % 7)
        await asyncio.sleep(0.01)


def batches() -> Iterator[list[str]]:
    """Fresh inputs, plus a quarter repeated from the batch before (hits, unless evicted)."""
    previous: list[str] = []
    for _ in range(BATCHES):
        fresh = [uuid.uuid4().hex for _ in range(INPUTS - len(previous) // 4)]
        batch = fresh + previous[: len(previous) // 4]
        previous = batch
        yield batch


async def info(client: aioredis.Redis, name: str) -> int:
    return int((await client.info("stats"))[name])


@pytest.mark.parametrize("policy", POLICIES)
async def test_counters_survive_eviction_and_stay_exact(
    policy: str, small_redis: RedisServer, upstream_mock: respx.MockRouter
) -> None:
    admin = aioredis.from_url(small_redis.url)
    await admin.config_set("maxmemory-policy", policy)
    settings = make_settings(cache_backend="redis", redis_url=small_redis.url)
    try:
        async with running(settings) as one, running(settings) as two:
            sampler = Sampler(one)
            reading = asyncio.create_task(sampler.run())
            try:
                await asyncio.gather(embedding_stream(one, two), chat_stream(one, two))
            finally:
                sampler.stop.set()
                await reading
            for _ in range(2):  # each gateway raises what it saw, after the last eviction
                for gw in (one, two):
                    assert await gw.gateway.accounting.flush()
            final = stats_doc(await one.http.get("/v1/cache/stats"))
            sampler.check(final)
            series = stats_doc(await one.http.get("/v1/cache/stats?series=minute&points=5"))
            in_minutes = sum(answered(p) for p in series["series"]["points"])
            hours = stats_doc(await one.http.get("/v1/cache/stats?series=hour&points=2"))
            in_hours = sum(answered(p) for p in hours["series"]["points"])
            restores = [gw.gateway.accounting.backend.restores for gw in (one, two)]
        evicted = await info(admin, "evicted_keys")
        stats_keys = [k async for k in admin.scan_iter(match=f"{settings.cache_namespace}:stats:*")]
        ttls = [await admin.ttl(k) for k in stats_keys]
    finally:
        await admin.aclose()
    assert evicted > 0, "the burst must overflow maxmemory"
    assert sampler.reads > 5  # every read checked against the one before
    assert final["provider_errors"] == 0  # and every request answered 200 (embed, chat)
    assert ttls and all(ttl == -1 for ttl in ttls)  # no stats key can expire
    made = {MODEL: BATCHES * INPUTS, **{m: CHATS // len(CHAT_MODELS) for m in CHAT_MODELS}}
    counted = {m: answered(final["by_model"][m]) for m in made}
    print(
        f"{policy}: {evicted} evicted, restores {restores}, counted {counted} of {made}, "
        f"minutes {in_minutes}, hours {in_hours}"
    )
    if policy.startswith("volatile-"):
        # A key without a TTL is never a volatile-* candidate: nothing to restore, all exact.
        assert restores == [0, 0]
        assert counted == made and answered(final) == sum(made.values())
        # The minute and hour buckets are no candidates either (they were, with EXPIREAT).
        assert in_minutes == in_hours == sum(made.values())
    else:
        # allkeys-*: stats keys are evicted too and restored; never counted above what was
        # made (nor backwards, nor a model above the totals: the sampler). Exact unless a
        # hash was evicted twice before every gateway had flushed (docs/cluster.md).
        assert all(counted[m] <= made[m] for m in made)
        assert sum(counted.values()) <= answered(final) <= sum(made.values())
        assert in_minutes <= sum(made.values()) and in_hours <= sum(made.values())
        if policy == "allkeys-random":  # evicts stats keys as readily as entries
            assert sum(restores) > 0
