"""Leases without a TTL, on real redis-servers (CONTRACT §6: leases are never lost to eviction).

A lease is ``<token>|<deadline ms>`` with no TTL: `volatile-*` eviction never picks it, its
deadline (Redis's own clock) frees it for the next claim, a renewal pushes it on, and one
that vanished anyway (an `allkeys-*` policy) is taken again by its live holder's renewer.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
import respx
from redis.exceptions import OutOfMemoryError

from genai_api.leases.batch import BatchLeases
from genai_api.leases.redis import HeldLease
from tests.conftest import CHAT, make_settings, running
from tests.redis_server import RedisServer
from tests.test_batch_leases import Fetcher, read
from tests.test_leases import entry_key, holder, node, raw

pytestmark = pytest.mark.redis


@pytest.fixture
def ns() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def keys_of(ns: str, n: int, start: int = 0) -> list[str]:
    return [f"{ns}:e:emb:anon:m:-:{i:064x}" for i in range(start, start + n)]


async def locks_left(client: aioredis.Redis, ns: str) -> list[bytes]:
    return [k async for k in client.scan_iter(match=f"{ns}:lock:*")]


async def until_locks(client: aioredis.Redis, ns: str, n: int) -> None:
    """Until `n` leases of `ns` are taken (at most 5 s)."""
    for _ in range(500):
        if len(await locks_left(client, ns)) >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"fewer than {n} leases were taken")


async def test_a_lease_has_no_ttl_and_is_taken_over_once_its_deadline_passed(
    redis_url: str, ns: str
) -> None:
    key = entry_key(ns)
    async with node(redis_url, ns, lease=0.4) as a, node(redis_url, ns, poll=0.05) as b:
        loop = asyncio.get_running_loop()
        started = loop.time()  # before the claim: a stall after it would shorten the wait
        dead = await a.claim(key, raw)  # never entered: never renewed, as if its process died
        assert isinstance(dead, HeldLease)
        assert await a.store.client.pttl(dead.lock) == -1
        taker = await asyncio.wait_for(b.claim(key, raw), 10)
        took = loop.time() - started
        assert isinstance(taker, HeldLease)
        assert await holder(b.store.client, taker.lock) == taker.token
        async with taker:
            await taker.fill(b.store, key, b"answer", 60)
        assert await b.store.client.exists(taker.lock) == 0
    assert 0.25 < took < 3  # waited for the deadline, not for ever


async def test_batch_leases_have_no_ttl_and_are_taken_over_once_their_deadline_passed(
    redis_url: str, ns: str
) -> None:
    keys = keys_of(ns, 3)
    async with node(redis_url, ns, lease=0.4) as a, node(redis_url, ns, poll=0.05) as c:
        holder_batch, taker_batch = BatchLeases(a), BatchLeases(c)
        slow = Fetcher()
        slow.gate.clear()
        held = asyncio.create_task(holder_batch.fill(keys, read, slow))
        client = a.store.client
        await until_locks(client, ns, 3)
        assert {await client.pttl(lock) for lock in await locks_left(client, ns)} == {-1}
        # The holder's renewals stop (a process that died): its leases expire by deadline.
        for task in list(a._tasks):
            task.cancel()
        fetch = Fetcher()
        got = await asyncio.wait_for(taker_batch.fill(keys, read, fetch), 10)
        slow.gate.set()
        await asyncio.wait_for(held, 10)
    assert fetch.calls == [keys]
    assert set(got) == set(keys)


async def test_a_renewal_racing_the_holders_own_fill_leaves_no_lease(
    redis_url: str, ns: str
) -> None:
    """A renewal that reaches Redis after the fill finds the lease gone and takes it again:
    then, the call being over, it gives it back at once. Renewing every 20 ms, a hundred
    fills leave no lease behind."""
    async with node(redis_url, ns, lease=0.06) as a:
        batch = BatchLeases(a)
        for i in range(100):
            key = entry_key(ns).replace("a" * 64, f"{i:064x}")
            claim = await a.claim(key, raw)
            async with claim:
                await asyncio.sleep(0.001 * (i % 25))
                await claim.fill(a.store, key, b"answer", 60)
            await batch.fill(keys_of(ns, 2, start=1000 + 2 * i), read, Fetcher())
        # A renewal still in flight may take a lease again and give it back: wait for that
        # (a lease left behind stays a key for ever: its deadline does not delete it).
        for _ in range(100):
            left = await locks_left(a.store.client, ns)
            if not left:
                break
            await asyncio.sleep(0.05)
    assert left == []


POLICIES = ["volatile-lru", "volatile-lfu", "volatile-ttl", "allkeys-lru"]


async def burst(client: aioredis.Redis, ns: str, round_: int) -> None:
    """Cache entries (with a TTL) worth several times `maxmemory`."""
    value = os.urandom(4096)
    for start in range(0, 3000, 500):
        async with client.pipeline(transaction=False) as pipe:
            for i in range(start, start + 500):
                pipe.set(f"{ns}:e:burst:{round_}:{i}", value, px=600_000)
            await pipe.execute()


async def evicted(client: aioredis.Redis) -> int:
    return int((await client.info("stats"))["evicted_keys"])


@pytest.mark.parametrize("policy", POLICIES)
async def test_live_holders_keep_their_leases_through_an_eviction_burst(
    tmp_path: Path, ns: str, policy: str, redis_binary: None
) -> None:
    """Under `volatile-*` a lease is never a candidate (no TTL); under `allkeys-*` it may be
    evicted, and its live holder's renewer takes it again within a renewal tick. Either way
    the holder still holds it when its call ends, and its fill releases it."""
    server = RedisServer(tmp_path).start()
    try:
        admin = aioredis.from_url(server.url)
        await admin.config_set("maxmemory", "2mb")
        await admin.config_set("maxmemory-policy", policy)
        async with node(server.url, ns, lease=1.5) as one, node(server.url, ns, lease=1.5) as many:
            key = entry_key(ns)
            claim = await one.claim(key, raw)
            assert isinstance(claim, HeldLease)
            slow = Fetcher()
            slow.gate.clear()
            keys = keys_of(ns, 8)
            batch = asyncio.create_task(BatchLeases(many).fill(keys, read, slow))
            async with claim:
                await until_locks(admin, ns, 1 + len(keys))
                locks = [claim.lock, *(many.lock_key(k) for k in keys)]
                rounds = 0
                while True:  # allkeys: until both holders have seen a lease of theirs go
                    await burst(admin, ns, rounds)
                    rounds += 1
                    if policy.startswith("volatile") and rounds == 2:
                        break
                    if (one.retaken and many.retaken) or rounds == 12:
                        break
                    await asyncio.sleep(0.6)  # a renewal tick
                assert await evicted(admin) > 1000
                if policy.startswith("volatile"):
                    assert (one.retaken, many.retaken) == (0, 0)  # never evicted
                else:
                    assert one.retaken >= 1 and many.retaken >= 1
                await asyncio.sleep(0.6)  # a renewal tick after the last burst
                tokens = [await holder(admin, lock) for lock in locks]
                assert tokens[0] == claim.token
                assert len(set(tokens[1:])) == 1 and tokens[1] is not None
                await claim.fill(one.store, key, b"answer", 60)
            slow.gate.set()
            await asyncio.wait_for(batch, 10)
            left = await locks_left(admin, ns)
        await admin.aclose()
    finally:
        server.stop()
    assert left == []


async def test_a_holders_failure_is_shared_with_its_waiters_in_the_same_process(
    upstream: respx.MockRouter,
) -> None:
    """Within one process the flight's waiters share its exception (`Coalescer`): one
    upstream call, every request answered its 429 with `Retry-After`."""
    started = asyncio.Event()

    async def limited(request: httpx.Request) -> httpx.Response:
        started.set()
        await asyncio.sleep(0.3)
        body = {"error": {"message": "slow down", "type": "rate_limit", "code": None}}
        return httpx.Response(429, json=body, headers={"Retry-After": "7"})

    route = upstream.post("/chat/completions").mock(side_effect=limited)
    async with running(make_settings()) as gw:
        answers = await asyncio.gather(
            *(gw.http.post("/v1/chat/completions", json=CHAT) for _ in range(6))
        )
    assert route.call_count == 1
    assert {a.status_code for a in answers} == {429}
    assert {a.headers.get("retry-after") for a in answers} == {"7"}
    assert {a.json()["error"]["message"] for a in answers} == {"slow down"}


async def test_a_full_redis_refusing_the_renewals_set_keeps_the_lease_by_a_ttl(
    tmp_path: Path, ns: str, redis_binary: None
) -> None:
    """Under `noeviction` a full Redis refuses SET but not PEXPIRE: a renewal it refused
    gives the lease a TTL instead, so it outlives its deadline while its holder lives (a
    lease with a TTL is held until Redis expires it); once memory is freed, the next renewal
    makes it TTL-less again."""
    server = RedisServer(tmp_path).start()
    try:
        admin = aioredis.from_url(server.url)
        await admin.config_set("maxmemory", "2mb")
        await admin.config_set("maxmemory-policy", "noeviction")
        key = entry_key(ns)
        async with (
            node(server.url, ns, lease=0.6) as a,
            node(server.url, ns, poll=0.05, max_wait=2) as b,
        ):
            claim = await a.claim(key, raw)
            assert isinstance(claim, HeldLease)
            async with claim:
                filler = [f"{ns}:e:fill:{i}" for i in range(2000)]
                with pytest.raises(OutOfMemoryError):
                    for name in filler:
                        await admin.set(name, os.urandom(4096), px=600_000)
                await admin.config_set("maxmemory", "1mb")  # well past it, buffers or not
                await asyncio.sleep(0.9)  # past the deadline the last accepted renewal wrote
                full_ttl = await admin.pttl(claim.lock)
                taker = await b.claim(key, raw)  # refused its waiter flag: it bypasses
                still = await holder(admin, claim.lock)
                await admin.delete(*filler)  # memory back
                await admin.config_set("maxmemory", "2mb")
                for _ in range(50):  # the next renewal tick (every 0.2 s; later when loaded)
                    freed_ttl = await admin.pttl(claim.lock)
                    if freed_ttl == -1:
                        break
                    await asyncio.sleep(0.05)
                await claim.fill(a.store, key, b"answer", 60)
            left = await admin.exists(claim.lock)
        await admin.aclose()
    finally:
        server.stop()
    assert 0 < full_ttl <= 600
    assert taker.degraded and not isinstance(taker, HeldLease)
    assert still == claim.token
    assert freed_ttl == -1
    assert left == 0
