"""A full Redis (`maxmemory` reached, `noeviction`) is not an unreachable one: hits go on, new
answers BYPASS without opening any breaker, refused writes are counted, `/readyz` says
`degraded` with the reason `cache_full`, and all of it ends by itself once Redis has room.

In every Redis mode, on real servers: the session's standalone, Sentinel and cluster
set-ups made full with `CONFIG SET maxmemory 1` (every write refused at once, restored after
the test), and a server of its own filled with data until Redis refuses writes.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
import redis
import respx

from genai_api.errors import WriteRefused
from genai_api.logs import flush_logs
from genai_api.settings import Settings
from genai_api.store import budget
from genai_api.store.near import redis_of
from genai_api.store.redis import RedisStore, redis_options
from tests.conftest import (
    CHAT,
    TOPOLOGIES,
    chat_response,
    make_settings,
    running,
    stats_doc,
    topology_settings,
)
from tests.embeddings_provider import Provider, assert_vectors, embed
from tests.redis_server import RedisServer, capped
from tests.redis_topologies import RedisClusterServers

pytestmark = pytest.mark.redis

PATH = "/v1/chat/completions"
ADMIN = {"Authorization": "Bearer admin-key"}


@dataclass
class Backend:
    mode: str
    settings: dict[str, Any]
    primaries: list[int]  # ports of the servers that take writes


@pytest.fixture(params=TOPOLOGIES)
def backend(request: pytest.FixtureRequest) -> Backend:
    mode = str(request.param)
    values = topology_settings(request, mode)
    if mode == "cluster":
        ports = list(request.getfixturevalue("redis_cluster").primaries())
    elif mode == "sentinel":
        ports = [request.getfixturevalue("redis_sentinel").master_port()]
    else:
        ports = [int(urlparse(values["redis_url"]).port or 6379)]
    return Backend(mode, values, ports)


@contextmanager
def full(*ports: int) -> Iterator[None]:
    """Every write to these servers refused for want of memory, until the block ends."""
    clients = [redis.Redis(port=port, socket_timeout=5) for port in ports]
    try:
        for client in clients:
            client.config_set("maxmemory", "1")
        yield
    finally:
        for client in clients:
            client.config_set("maxmemory", "0")
            client.close()


def chat(content: str) -> dict[str, Any]:
    return {**CHAT, "messages": [{"role": "user", "content": content}]}


def settings(values: dict[str, Any], **overrides: Any) -> Settings:
    """One counted failure would open a breaker (`redis_breaker_failures=1`): none may be."""
    base: dict[str, Any] = {
        "redis_breaker_failures": 1,
        "redis_breaker_seconds": 30,
        "cache_l1_max_bytes": 0,  # hits must come from Redis itself, not this process
        "admin_api_key": "admin-key",
    }
    return make_settings(**{**values, **base, **overrides})


def refused_metric(text: str) -> float:
    match = re.search(r"^genai_cache_refused_writes_total ([0-9.e+]+)$", text, re.MULTILINE)
    assert match is not None, "no genai_cache_refused_writes_total in /metrics"
    return float(match.group(1))


@pytest.fixture
def provider(upstream: respx.MockRouter) -> respx.Route:
    return upstream.post("/chat/completions").mock(
        side_effect=lambda request: httpx.Response(200, json=chat_response())
    )


async def test_a_full_redis_serves_hits_and_bypasses_new_answers(
    provider: respx.Route, backend: Backend
) -> None:
    async with running(settings(backend.settings)) as gw:
        first = await gw.http.post(PATH, json=chat("stored before Redis was full"))
        again = await gw.http.post(PATH, json=chat("stored before Redis was full"))
        assert [first.headers["x-cache"], again.headers["x-cache"]] == ["MISS", "HIT"]
        redis_store = redis_of(gw.gateway.store)
        assert redis_store is not None
        with full(*backend.primaries):
            new = [await gw.http.post(PATH, json=chat(f"new while full {i}")) for i in range(6)]
            hit = await gw.http.post(PATH, json=chat("stored before Redis was full"))
            ready = await gw.http.get("/readyz")
            metrics = (await gw.http.get("/metrics")).text
            stats = stats_doc(await gw.http.get("/v1/cache/stats", headers=ADMIN))
        assert [(a.status_code, a.headers["x-cache"]) for a in new] == [(200, "BYPASS")] * 6
        assert hit.headers["x-cache"] == "HIT"  # reads went on, breaker or not
        assert redis_store.failures == 0 and not redis_store.breaker.is_open
        assert ready.status_code == 200
        doc = ready.json()
        assert (doc["status"], doc["reasons"]) == ("degraded", ["cache_full"])
        if backend.mode == "cluster":
            assert doc["shards_full"] and all(":" in shard for shard in doc["shards_full"])
        else:
            assert "shards_full" not in doc
        assert refused_metric(metrics) == 6  # one refused claim per new answer
        assert (stats["bypassed"], stats["errors"], stats["hits"]) == (6, 6, 2)

        # Room again: the next /readyz finds it out (a write probe), and answers are stored.
        back = (await gw.http.get("/readyz")).json()
        stored = await gw.http.post(PATH, json=chat("new while full 0"))
        hit_after = await gw.http.post(PATH, json=chat("new while full 0"))
    assert back["status"] == "ready" and "reasons" not in back
    assert [stored.headers["x-cache"], hit_after.headers["x-cache"]] == ["MISS", "HIT"]
    assert provider.call_count == 1 + 6 + 1


async def test_a_store_refused_after_the_answer_went_out_releases_its_lease(
    upstream: respx.MockRouter, redis_server: RedisServer
) -> None:
    """The claim took the lease, then Redis filled up while the provider answered: the store
    sent without waiting for its reply is refused. The answer went out (MISS), the refusal is
    counted, no breaker opened, and the lease is released (DEL is never refused), so no
    other process waits out the lease for an entry that will not come."""
    filler = redis.Redis(port=redis_server.port)

    def answer_after_filling(request: httpx.Request) -> httpx.Response:
        filler.config_set("maxmemory", "1")
        return httpx.Response(200, json=chat_response())

    upstream.post("/chat/completions").mock(side_effect=answer_after_filling)
    values = {"cache_backend": "redis", "redis_url": redis_server.url}
    try:
        async with running(settings(values)) as gw:
            answer = await gw.http.post(PATH, json=chat("filled mid-flight"))
            leases = gw.gateway.pipeline.leases
            await asyncio.gather(*leases._landing)  # the store's reply, read in the background
            ready = (await gw.http.get("/readyz")).json()
            ns = gw.gateway.settings.cache_namespace
            store = redis_of(gw.gateway.store)
            assert store is not None
            locks = [k async for k in store.client.scan_iter(match=f"{ns}:lock:*")]
            entries = [k async for k in store.client.scan_iter(match=f"{ns}:e:*")]
    finally:
        filler.config_set("maxmemory", "0")
        filler.close()
    assert (answer.status_code, answer.headers["x-cache"]) == (200, "MISS")
    assert (store.refusals.count, store.failures, store.breaker.is_open) == (1, 0, False)
    assert ready["reasons"] == ["cache_full"]
    assert locks == [] and entries == []


def fill(port: int) -> int:
    """Write junk until Redis refuses: how many 64 KB values it took. Then its limit is
    pulled 512 KB under what it holds: at the edge, the buffers of a connection that closes
    would otherwise make room for a few writes (as a busy full Redis does, on and off)."""
    client = redis.Redis(port=port)
    try:
        for i in range(10_000):
            try:
                client.set(f"junk:{i}", b"x" * 65_536)
            except redis.exceptions.OutOfMemoryError:
                used = int(client.info("memory")["used_memory"])
                client.config_set("maxmemory", str(used - 524_288))
                return i
        raise AssertionError("Redis never refused a write")
    finally:
        client.close()


@pytest.fixture
def small_redis(tmp_path: Path, redis_binary: None) -> Iterator[RedisServer]:
    with capped(tmp_path, "noeviction") as server:
        yield server


async def test_a_filled_redis_still_answers_embedding_batches_from_what_it_holds(
    upstream: respx.MockRouter, small_redis: RedisServer
) -> None:
    fake = Provider()
    upstream.post("/embeddings").mock(side_effect=fake)
    values = {"cache_backend": "redis", "redis_url": small_redis.url}
    async with running(settings(values)) as gw:
        await embed(gw, ["alpha", "beta"])
        assert fill(small_redis.port) > 0
        answer = await embed(gw, ["alpha", "beta", "gamma", "delta"])
        ready = (await gw.http.get("/readyz")).json()
        store = redis_of(gw.gateway.store)
        assert store is not None
        refusals, failures = store.refusals.count, store.failures
        # Memory freed (the junk, not the cache): ready again, and the new inputs are stored.
        cleaner = redis.Redis(port=small_redis.port)
        cleaner.delete(*[f"junk:{i}" for i in range(10_000)])
        cleaner.close()
        back = (await gw.http.get("/readyz")).json()
        await embed(gw, ["gamma"])
        stored = await embed(gw, ["gamma"])
    assert_vectors(answer, ["alpha", "beta", "gamma", "delta"])
    assert (answer.headers["x-cache-hits"], answer.headers["x-cache-misses"]) == ("2", "2")
    assert answer.headers["x-cache"] == "BYPASS"
    assert fake.sent == ["alpha", "beta", "gamma", "delta", "gamma"]
    assert refusals >= 1 and failures == 0
    assert (ready["status"], ready["reasons"]) == ("degraded", ["cache_full"])
    assert back["status"] == "ready"
    assert stored.headers["x-cache"] == "HIT"


async def test_counts_made_while_redis_is_full_reach_it_once_it_has_room(
    provider: respx.Route, redis_server: RedisServer
) -> None:
    """The savings flush (HINCRBYs, refused like any write) keeps its batch and retries it:
    nothing counted while Redis was full is lost, nothing is counted twice."""
    values = {"cache_backend": "redis", "redis_url": redis_server.url}
    async with running(settings(values)) as gw:
        accounting = gw.gateway.accounting
        await gw.http.post(PATH, json=chat("counted"))
        assert await accounting.flush()
        with full(redis_server.port):
            for _ in range(3):
                await gw.http.post(PATH, json=chat("counted"))  # hits, counted while full
            await gw.http.post(PATH, json=chat("a new one while full"))
            refused_flush = await accounting.flush()
        assert await accounting.flush()  # the batch kept, written now
        totals = await accounting.backend.read()
    assert not refused_flush
    assert (totals.totals["hits"], totals.totals["misses"], totals.totals["bypassed"]) == (3, 1, 1)
    assert totals.totals["errors"] == 1


async def test_two_thousand_refused_writes_make_a_handful_of_warning_lines(
    provider: respx.Route, redis_server: RedisServer, configured: io.StringIO
) -> None:
    """The logging `serve` sets up (`logging_config`): the same warning once per 10 s, then a
    line saying how many were held back; the access log keeps one line per request."""
    values = {"cache_backend": "redis", "redis_url": redis_server.url}
    async with running(settings(values)) as gw:
        loop = asyncio.get_running_loop()
        with full(redis_server.port):
            started = loop.time()
            for batch in range(40):
                answers = await asyncio.gather(
                    *(gw.http.post(PATH, json=chat(f"{batch}-{i}")) for i in range(50))
                )
                assert all(a.headers["x-cache"] == "BYPASS" for a in answers)
            took = loop.time() - started
        store = redis_of(gw.gateway.store)
        assert store is not None and store.refusals.count == 2_000
    flush_logs()
    lines = configured.getvalue().splitlines()
    warnings = [line for line in lines if " WARNING " in line]
    refused = [line for line in warnings if "write refused" in line]
    access = [line for line in lines if "genai_api.access: POST /v1/chat/completions" in line]
    assert took < 30, took
    assert 1 <= len(refused) <= 1 + int(took / 10), warnings
    assert len(warnings) <= 3 + int(took / 10), warnings  # and the stats flush's, once
    # What was held back is said: at shutdown here, or with the next window's first line.
    held = [int(n) for line in warnings for n in re.findall(r"\b(\d+) more like", line)]
    assert sum(held) + len(refused) == 2_000, warnings
    assert len(access) == 2_000


async def test_one_full_primary_costs_only_the_keys_it_holds(
    provider: respx.Route, redis_cluster: RedisClusterServers
) -> None:
    values = {"cache_backend": "redis", "redis_mode": "cluster", "redis_url": redis_cluster.url}
    filled = redis_cluster.primaries()[0]
    async with running(settings(values)) as gw:
        with full(filled):
            answers = [
                await gw.http.post(PATH, json=chat(f"one full shard {i}")) for i in range(12)
            ]
            ready = (await gw.http.get("/readyz")).json()
        again = [await gw.http.post(PATH, json=chat(f"one full shard {i}")) for i in range(12)]
    on_full = [
        redis_cluster.primary_of("{" + a.headers["x-cache-key"] + "}") == filled for a in answers
    ]
    assert any(on_full) and not all(on_full)  # 12 keys over 3 primaries: both kinds
    for answer, later, refused in zip(answers, again, on_full, strict=True):
        assert answer.status_code == 200
        assert answer.headers["x-cache"] == ("BYPASS" if refused else "MISS")
        assert later.headers["x-cache"] == ("MISS" if refused else "HIT")  # stored once room
    assert (ready["status"], ready["reasons"]) == ("degraded", ["cache_full"])
    assert ready["shards_full"] == [f"127.0.0.1:{filled}"]


async def test_a_refused_write_spends_neither_the_breaker_nor_the_requests_budget(
    redis_server: RedisServer,
) -> None:
    store = RedisStore(
        redis_options(redis_server.url, host="", port=0, password=None, db=0),
        timeout=2.0,
        max_connections=4,
        breaker_seconds=30,
        breaker_failures=1,
    )
    try:
        await store.set("before", b"stored", 60)
        spending = budget.begin()
        with full(redis_server.port):
            with pytest.raises(WriteRefused):
                await store.set("while full", b"refused", 60)
            read = await store.get("before")  # the same request reads on
        assert read == b"stored"
        assert not spending.spent and not store.breaker.is_open
        assert (store.refusals.count, store.failures, store.full) == (1, 0, ("redis",))
        assert await store.ping() and store.full == ()  # the probe found room again
    finally:
        await store.close()
