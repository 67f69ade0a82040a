"""Owner records under `maxmemory` (CONTRACT §6), on real redis-servers: a full Redis never
fails the creation of an object (its record waits in the creating process, honoured there,
and lands once Redis has room), and an evicted record is written back by a process that
remembers it. Neither ever lets a tenant reach another's object, and an object nobody is
known to own stays a 404 for everyone (`genai_api.tenancy.kept`).

Two gateways on one Redis stand for two replicas; the upstream is the fake's real files
behind respx (`tests.test_passthrough_tenancy.fake`).
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import respx

from bench.fake_upstream import FakeUpstream
from genai_api.store.redis import RedisStore, redis_options
from genai_api.tenancy.kept import KeptOwnerRecords
from genai_api.tenancy.owners import Owner, RedisOwnerRecords
from tests.conftest import make_settings, running
from tests.redis_server import RedisServer, capped
from tests.responses_client import REQUEST
from tests.test_passthrough_tenancy import BATCH_LINE, KEYS, Tenants
from tests.test_passthrough_tenancy import fake as fake  # the fixture
from tests.test_redis_full import Backend, fill, full, refused_metric
from tests.test_redis_full import backend as backend  # the fixture: one per Redis mode

pytestmark = pytest.mark.redis

JUNK = 10_000  # keys `fill` may write


@pytest.fixture
def noeviction(tmp_path: Path, redis_binary: None) -> Iterator[RedisServer]:
    with capped(tmp_path, "noeviction") as server:
        yield server


@pytest.fixture
def allkeys_lru(tmp_path: Path, redis_binary: None) -> Iterator[RedisServer]:
    with capped(tmp_path, "allkeys-lru") as server:
        yield server


@asynccontextmanager
async def replicas(server: RedisServer) -> AsyncIterator[tuple[Tenants, Tenants]]:
    """Two gateways (replicas) sharing `server` and one namespace."""
    settings = make_settings(gateway_api_keys=KEYS, cache_backend="redis", redis_url=server.url)
    async with running(settings) as one, running(settings) as two:
        yield Tenants(one), Tenants(two)


def records_of(gw: Tenants) -> KeptOwnerRecords:
    records = gw.gw.gateway.tenancy.records
    assert isinstance(records, KeptOwnerRecords)
    return records


async def upload(tenants: Tenants, name: str = "a.jsonl") -> str:
    created = await tenants.a.files.create(file=(name, io.BytesIO(BATCH_LINE)), purpose="batch")
    return created.id


async def reach(tenants: Tenants, object_id: str) -> tuple[int, int]:
    """What tenant A (the creator) and tenant B get for the object."""
    path = f"/v1/files/{object_id}"
    return (await tenants.status("key-a", "GET", path), await tenants.status("key-b", "GET", path))


def key_of(tenants: Tenants, object_id: str) -> str:
    return f"{tenants.gw.gateway.settings.cache_namespace}:own:{object_id}"


async def until(check: object, within: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "the condition never held"
        await asyncio.sleep(0.05)


async def test_a_full_redis_never_fails_a_creation_and_the_record_lands_once_it_has_room(
    fake: FakeUpstream, noeviction: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    admin = redis.Redis(port=noeviction.port)
    caplog.set_level(logging.INFO, logger="genai_api.tenancy")
    try:
        async with replicas(noeviction) as (one, two):
            before = await upload(one, "before.jsonl")  # recorded while Redis had room
            assert fill(noeviction.port) > 0
            made = [await upload(one, f"{i}.jsonl") for i in range(12)]
            assert all(object_id in fake.objects.files for object_id in made)
            pending = dict(records_of(one).pending)
            on_one = [await reach(one, object_id) for object_id in made]
            on_two = [await reach(two, object_id) for object_id in made]
            # The owner may name a pending object in a body on its replica (a batch of it).
            batch = await one.a.batches.create(
                input_file_id=made[0], endpoint="/v1/chat/completions", completion_window="24h"
            )
            assert await one.status("key-b", "GET", f"/v1/batches/{batch.id}") == 404
            full_reach = (await reach(one, before), await reach(two, before))
            stored = [admin.exists(key_of(one, object_id)) for object_id in made]
            metrics = (await one.gw.http.get("/metrics")).text
            # Memory freed (the junk, not the cache): the background writer lands the records.
            admin.delete(*[f"junk:{i}" for i in range(JUNK)])
            await until(lambda: not records_of(one).pending)
            landed = [admin.get(key_of(one, object_id)) for object_id in [*made, batch.id]]
            later = [await reach(two, object_id) for object_id in made]
            tenant_a = one.gw.gateway.auth.tenant_id("key-a")
    finally:
        admin.close()
    assert set(pending) == {*made}  # every creation answered 2xx, its record waiting here
    assert on_one == [(200, 404)] * len(made)  # the owner uses it at once on its replica
    assert on_two == [(404, 404)] * len(made)  # elsewhere nobody's until it lands
    assert full_reach == ((200, 404), (200, 404))  # records in Redis: read as ever
    assert stored == [0] * len(made)
    assert refused_metric(metrics) >= 1  # the refused claims, counted as refused writes
    assert landed == [f"{tenant_a} file".encode()] * len(made) + [f"{tenant_a} batch".encode()]
    assert later == [(200, 404)] * len(made)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "Redis is full" in warnings[0].getMessage()  # one, not 13
    assert any("has room again" in r.getMessage() for r in caplog.records)


async def test_a_response_stored_while_redis_is_full_is_its_tenants_at_once(
    fake: FakeUpstream, upstream: respx.MockRouter, redis_server: RedisServer
) -> None:
    """The cached Responses route records the response id it serves (`tenancy.answers`):
    answered (BYPASS: the entry is refused too), continued and read by its tenant only."""
    transport = httpx.ASGITransport(app=fake)

    async def relay(request: httpx.Request) -> httpx.Response:
        answer = await transport.handle_async_request(request)
        return httpx.Response(
            answer.status_code, headers=answer.headers, content=await answer.aread()
        )

    upstream.route(url__regex=r"/v1/responses").mock(side_effect=relay)
    async with replicas(redis_server) as (one, two):
        path = "/v1/responses/{}"
        with full(redis_server.port):
            answer = await one.gw.http.post(
                "/v1/responses", json=REQUEST, headers={"Authorization": "Bearer key-a"}
            )
            made = answer.json()["id"]
            follow_up = {**REQUEST, "previous_response_id": made}
            continued = [
                await one.status(key, "POST", "/v1/responses", json=follow_up)
                for key in ("key-b", "key-a")
            ]
            read = [await one.status(k, "GET", path.format(made)) for k in ("key-a", "key-b")]
            elsewhere = await two.status("key-a", "GET", path.format(made))
        await until(lambda: not records_of(one).pending)
        landed = [await two.status(k, "GET", path.format(made)) for k in ("key-a", "key-b")]
    assert (answer.status_code, answer.headers["x-cache"]) == (200, "BYPASS")
    assert continued == [404, 200] and read == [200, 404] and elsewhere == 404
    assert landed == [200, 404]


async def test_in_every_redis_mode_a_refused_record_is_kept_until_it_lands(
    fake: FakeUpstream, backend: Backend
) -> None:
    """Standalone, Sentinel and Cluster (every primary full: `CONFIG SET maxmemory 1`)."""
    settings = make_settings(gateway_api_keys=KEYS, **backend.settings)
    async with running(settings) as gw:
        tenants = Tenants(gw)
        records = records_of(tenants)
        with full(*backend.primaries):
            made = await upload(tenants)
            waiting = made in records.pending
            during = await reach(tenants, made)
            refused = records.records._redis.refusals.count
        await until(lambda: not records.pending)
        in_redis = await records.records.get_many([made])
        after = await reach(tenants, made)
        tenant_a = gw.gateway.auth.tenant_id("key-a")
    assert waiting and during == (200, 404) and refused >= 1
    assert in_redis == [(tenant_a, "file")] and after == (200, 404)


async def test_an_object_deleted_before_its_record_landed_leaves_no_record(
    fake: FakeUpstream, redis_server: RedisServer
) -> None:
    admin = redis.Redis(port=redis_server.port)
    try:
        async with replicas(redis_server) as (one, _):
            with full(redis_server.port):
                made = await upload(one)
                assert made in records_of(one).pending
                gone = await one.a.files.delete(made)
            assert await records_of(one).write_pending()
            left = admin.exists(key_of(one, made))
            after = await reach(one, made)
    finally:
        admin.close()
    assert gone.deleted and made not in fake.objects.files
    assert left == 0 and after == (404, 404)


async def test_an_object_deleted_while_its_record_is_being_written_leaves_no_record(
    fake: FakeUpstream, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The delete's DEL may reach Redis before the background write's SET NX: the writer
    deletes what was forgotten while its write was on its way."""
    admin = redis.Redis(port=redis_server.port)
    try:
        async with replicas(redis_server) as (one, _):
            records = records_of(one)
            with full(redis_server.port):
                made = await upload(one)
                records._task.cancel()  # type: ignore[union-attr]  # written below instead
            claim = records.records.claim_many

            async def delete_then_claim(claims: Any) -> Any:
                assert await one.a.files.delete(made)  # its DEL first...
                owners = await claim(claims)  # ...then the write's SET NX
                assert admin.exists(key_of(one, made)) == 1
                return owners

            monkeypatch.setattr(records.records, "claim_many", delete_then_claim)
            assert await records.write_pending()
            left = admin.exists(key_of(one, made))
            after = await reach(one, made)
    finally:
        admin.close()
    assert made not in fake.objects.files
    assert left == 0 and after == (404, 404)


async def test_the_records_a_process_keeps_are_bounded(
    fake: FakeUpstream, redis_server: RedisServer
) -> None:
    """Past `PENDING_MOST` a refused record is not kept: the creation answers 503 (the
    object exists upstream, nobody's), as when Redis cannot be reached at all."""
    async with replicas(redis_server) as (one, _):
        records_of(one).pending_most = 2
        with full(redis_server.port):
            made = [await upload(one, f"{i}.jsonl") for i in range(2)]
            third = await one.gw.http.post(
                "/v1/files",
                headers={"Authorization": "Bearer key-a"},
                files={"file": ("c.jsonl", BATCH_LINE)},
                data={"purpose": "batch"},
            )
            kept_here = sorted(records_of(one).pending)
        assert await records_of(one).write_pending()
        reached = [await reach(one, object_id) for object_id in made]
    assert kept_here == sorted(made)
    assert third.status_code == 503 and third.json()["error"]["code"] == "tenancy_unavailable"
    assert reached == [(200, 404)] * 2


async def test_records_waiting_at_shutdown_are_written_if_redis_has_room(
    fake: FakeUpstream, redis_server: RedisServer
) -> None:
    admin = redis.Redis(port=redis_server.port)
    try:
        async with replicas(redis_server) as (one, _):
            with full(redis_server.port):
                made = await upload(one)
                records_of(one)._task.cancel()  # type: ignore[union-attr]  # aclose writes
            key = key_of(one, made)
        stored = admin.get(key)  # after both gateways closed
    finally:
        admin.close()
    assert stored is not None and stored.endswith(b" file")


async def test_an_evicted_record_is_written_back_by_a_process_that_remembers_it(
    fake: FakeUpstream, allkeys_lru: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """`allkeys-lru`: junk written after the records pushes them out (LRU, one-second clock).
    A replica that never saw a record answers 404 to everyone, its owner too (fails closed);
    the replica that created it writes it back when asked and serves its owner; B never."""
    admin = redis.Redis(port=allkeys_lru.port)
    try:
        async with replicas(allkeys_lru) as (one, two):
            made = [await upload(one, f"{i}.jsonl") for i in range(5)]
            await asyncio.sleep(1.2)  # Redis's LRU clock: the junk must be younger
            for i in range(600):  # 38 MB through 8 MB
                admin.set(f"junk:{i}", b"x" * 65_536)
            evicted = [i for i in made if not admin.exists(key_of(one, i))]
            assert evicted, "the junk must evict some records"
            elsewhere = [await reach(two, object_id) for object_id in evicted]
            here = [await reach(one, object_id) for object_id in evicted]
            back = [admin.get(key_of(one, object_id)) for object_id in evicted]
            now_elsewhere = [await reach(two, object_id) for object_id in evicted]
            written_back = records_of(one).written_back
            tenant_a = one.gw.gateway.auth.tenant_id("key-a")
    finally:
        admin.close()
    assert elsewhere == [(404, 404)] * len(evicted)  # nobody's where it was never seen
    assert here == [(200, 404)] * len(evicted)  # B asks first in `reach`: still refused
    assert back == [f"{tenant_a} file".encode()] * len(evicted)
    assert now_elsewhere == [(200, 404)] * len(evicted)
    assert written_back == len(evicted)
    warned = [r.getMessage() for r in caplog.records if r.name == "genai_api.tenancy"]
    assert len(warned) == 1  # one a minute, however many were written back
    assert "evicted by Redis" in warned[0] and "volatile-lru" in warned[0]


async def test_a_full_redis_never_hands_an_owned_id_to_another_tenant(
    redis_server: RedisServer,
) -> None:
    """A refused claim of an id Redis has an owner for keeps that owner (as `SET NX`): it is
    not kept for the claimant, and reads answer Redis's owner, not a kept one."""
    store = RedisStore(
        redis_options(redis_server.url, host="", port=0, password=None, db=0),
        timeout=2.0,
        max_connections=4,
        breaker_seconds=30,
        breaker_failures=1,
    )
    records = KeptOwnerRecords(RedisOwnerRecords(store, "iso"))
    b, a = Owner("tenant-b", "file"), Owner("tenant-a", "file")
    try:
        assert await records.claim_many([("file-b", b)]) == [b]
        with full(redis_server.port):
            claimed = await records.claim_many([("file-b", a), ("file-new", a)])
            kept_here = dict(records.pending)
            read = await records.get_many(["file-b", "file-new", "file-unknown"])
        assert await records.write_pending()
        after = await records.get_many(["file-b", "file-new"])
    finally:
        await records.aclose()
        await store.close()
    assert claimed == [b, a] and kept_here == {"file-new": a}
    assert read == [b, a, None] and after == [b, a]


async def test_a_record_never_seen_is_not_invented(
    fake: FakeUpstream, redis_server: RedisServer
) -> None:
    """What a process remembers is only ever what Redis said: an id Redis never had (made at
    the provider directly) stays nobody's on every replica, full Redis or not."""
    async with replicas(redis_server) as (one, two):
        with full(redis_server.port):
            answers = [await reach(gw, "file-made-elsewhere") for gw in (one, two)]
    assert answers == [(404, 404), (404, 404)]
