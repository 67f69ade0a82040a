"""Batch leases on a real redis-server: each `node` is what one gateway process holds.

A `Fetcher` plays the upstream: it records which keys each call asked for, and can be held
at a gate or made to fail, so each test sees exactly which process fetched which key.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from genai_api.errors import CacheUnavailable, ProviderError
from genai_api.leases.batch import BatchLeases, Fetched
from genai_api.savings.accounting import CacheStatus
from tests.conftest import wait_until
from tests.redis_server import free_port
from tests.test_leases import node

pytestmark = pytest.mark.redis

MISS, HIT, COALESCED, BYPASS = (
    CacheStatus.MISS,
    CacheStatus.HIT,
    CacheStatus.COALESCED,
    CacheStatus.BYPASS,
)


class Fetcher:
    def __init__(self, *, fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = fail

    async def __call__(self, keys: list[str]) -> Fetched[bytes]:
        self.calls.append(list(keys))
        await self.gate.wait()
        if self.fail:
            return Fetched({}, error=RuntimeError("upstream failed"))
        values = {k: b"v:" + k.encode() for k in keys}
        return Fetched(values, [(k, v, 60.0) for k, v in values.items()])


async def read(keys: list[str], raws: list[bytes | None]) -> dict[str, bytes]:
    """Stored bytes are usable unless they say b"bad"."""
    return {k: raw for k, raw in zip(keys, raws, strict=True) if raw not in (None, b"bad")}


@asynccontextmanager
async def batch_node(url: str, ns: str, **options: float) -> AsyncIterator[BatchLeases]:
    async with node(url, ns, **options) as leases:
        yield BatchLeases(leases)


@pytest.fixture
def ns() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def keys(ns: str) -> list[str]:
    return [f"{ns}:e:emb:anon:m:-:{i:064x}" for i in range(6)]


async def locks_left(b: BatchLeases, ns: str) -> list[bytes]:
    return [k async for k in b.store.client.scan_iter(match=f"{ns}:lock:*")]


async def test_claimed_keys_are_fetched_stored_and_released(
    redis_url: str, ns: str, keys: list[str]
) -> None:
    async with batch_node(redis_url, ns) as a:
        fetch = Fetcher()
        got = await a.fill(keys[:3], read, fetch)
        stored = await a.store.client.mget(keys[:3])
        left = await locks_left(a, ns)
    assert fetch.calls == [keys[:3]]
    assert got == {k: (b"v:" + k.encode(), MISS) for k in keys[:3]}
    assert stored == [b"v:" + k.encode() for k in keys[:3]]
    assert left == []


async def test_overlapping_batches_in_two_processes_fetch_each_key_once(
    redis_url: str, ns: str, keys: list[str]
) -> None:
    async with batch_node(redis_url, ns) as a, batch_node(redis_url, ns) as b:
        fetch_a, fetch_b = Fetcher(), Fetcher()
        fetch_a.gate.clear()
        first = asyncio.create_task(a.fill(keys[:3], read, fetch_a))
        await wait_until(lambda: bool(fetch_a.calls))  # a holds keys 0-2 and is fetching
        second = asyncio.create_task(b.fill(keys[1:4], read, fetch_b))
        await wait_until(lambda: bool(fetch_b.calls) and b.leases.notifier.waiting == 3)
        await asyncio.sleep(0.1)
        assert not second.done()  # keys 1-2 are a's: b waits for them
        fetch_a.gate.set()
        got_a = await asyncio.wait_for(first, 10)
        got_b = await asyncio.wait_for(second, 10)  # poll is 60 s: woken by a's publish
    assert fetch_a.calls == [keys[:3]] and fetch_b.calls == [[keys[3]]]
    assert {k: s for k, (_, s) in got_a.items()} == dict.fromkeys(keys[:3], MISS)
    assert {k: s for k, (_, s) in got_b.items()} == {
        keys[1]: COALESCED,
        keys[2]: COALESCED,
        keys[3]: MISS,
    }
    assert all(v == b"v:" + k.encode() for k, (v, _) in got_b.items())


async def test_only_keys_someone_waits_for_are_published(
    redis_url: str, ns: str, keys: list[str]
) -> None:
    async with batch_node(redis_url, ns) as a, batch_node(redis_url, ns) as b:
        pubsub = a.store.client.pubsub()
        await pubsub.subscribe(a.leases.channel)
        await a.fill(keys[:2], read, Fetcher())  # nobody waits: no message
        fetch = Fetcher()
        fetch.gate.clear()
        holder = asyncio.create_task(a.fill(keys[2:5], read, fetch))
        await wait_until(lambda: bool(fetch.calls))
        waiter = asyncio.create_task(b.fill(keys[3:4], read, Fetcher()))
        await wait_until(lambda: b.leases.notifier.waiting == 1)
        await asyncio.sleep(0.1)  # b's claim round raised the flag of keys[3]
        fetch.gate.set()
        await asyncio.wait_for(asyncio.gather(holder, waiter), 10)
        messages = []
        for _ in range(5):  # the first read may be the subscribe confirmation
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if message is not None:
                messages.append(message["data"])
        await pubsub.aclose()
    assert messages == [keys[3].encode()]


async def test_stored_keys_are_hits_without_a_lease(
    redis_url: str, ns: str, keys: list[str]
) -> None:
    async with batch_node(redis_url, ns) as a:
        await a.store.client.set(keys[0], b"cached")
        fetch = Fetcher()
        got = await a.fill(keys[:2], read, fetch)
    assert fetch.calls == [[keys[1]]]
    assert got[keys[0]] == (b"cached", HIT)


async def test_failed_holder_hands_its_keys_to_exactly_one_waiter(
    redis_url: str, ns: str, keys: list[str]
) -> None:
    async with (
        batch_node(redis_url, ns) as a,
        batch_node(redis_url, ns) as b,
        batch_node(redis_url, ns) as c,
    ):
        failing = Fetcher(fail=True)
        failing.gate.clear()
        holder = asyncio.create_task(a.fill(keys[:2], read, failing))
        await wait_until(lambda: bool(failing.calls))
        fetchers = {b: Fetcher(), c: Fetcher()}
        waiters = [asyncio.create_task(n.fill(keys[:2], read, f)) for n, f in fetchers.items()]
        await wait_until(lambda: all(n.leases.notifier.waiting == 2 for n in fetchers))
        failing.gate.set()
        with pytest.raises(RuntimeError, match="upstream failed"):
            await asyncio.wait_for(holder, 10)
        answers = await asyncio.wait_for(asyncio.gather(*waiters), 10)
    takers = [f.calls for f in fetchers.values() if f.calls]
    assert takers == [[keys[:2]]]  # one waiter took over, in one call
    statuses = sorted(s for answer in answers for _, s in answer.values())
    assert statuses == [COALESCED, COALESCED, MISS, MISS]


async def test_dead_holders_leases_expire_then_one_waiter_takes_over(
    redis_url: str, ns: str, keys: list[str]
) -> None:
    async with (
        batch_node(redis_url, ns, poll=0.05) as b,
        batch_node(redis_url, ns, poll=0.05) as c,
    ):
        # A holder that was SIGKILLed: its leases stay until they expire, nobody publishes.
        for key in keys[:3]:
            await b.store.client.set(b.leases.lock_key(key), "dead-token", px=300)
        fetchers = {b: Fetcher(), c: Fetcher()}
        answers = await asyncio.wait_for(
            asyncio.gather(*(n.fill(keys[:3], read, f) for n, f in fetchers.items())), 10
        )
    assert sorted(f.calls for f in fetchers.values()) == [[], [keys[:3]]]
    assert all(v == b"v:" + k.encode() for answer in answers for k, (v, _) in answer.items())


async def test_leases_are_renewed_while_the_fetch_is_alive(
    redis_url: str, ns: str, keys: list[str]
) -> None:
    async with (
        batch_node(redis_url, ns, lease=0.6) as a,
        batch_node(redis_url, ns, poll=0.05) as b,
    ):
        slow, other = Fetcher(), Fetcher()
        slow.gate.clear()
        holder = asyncio.create_task(a.fill(keys[:2], read, slow))
        await wait_until(lambda: bool(slow.calls))
        waiter = asyncio.create_task(b.fill(keys[:2], read, other))
        await asyncio.sleep(1.8)  # three lease lengths, renewed every 200 ms
        assert not waiter.done() and other.calls == []
        slow.gate.set()
        await asyncio.wait_for(holder, 10)
        got = await asyncio.wait_for(waiter, 10)
    assert {s for _, s in got.values()} == {COALESCED}


async def test_unusable_stored_entry_is_refetched(redis_url: str, ns: str, keys: list[str]) -> None:
    async with batch_node(redis_url, ns, poll=60) as a:
        await a.store.client.set(keys[0], b"bad")  # corrupt, or too old for max-age
        fetch = Fetcher()
        got = await asyncio.wait_for(a.fill(keys[:1], read, fetch), 10)
        stored = await a.store.client.get(keys[0])
    assert fetch.calls == [keys[:1]]
    assert got[keys[0]][1] is MISS and stored == b"v:" + keys[0].encode()


async def test_refresh_claims_keys_whose_entries_exist(
    redis_url: str, ns: str, keys: list[str]
) -> None:
    async with batch_node(redis_url, ns) as a:
        await a.store.client.set(keys[0], b"bad")

        async def too_old(keys: list[str], raws: list[bytes | None]) -> dict[str, bytes]:
            return {}

        fetch = Fetcher()
        await a.fill(keys[:1], too_old, fetch, refresh=True)
    assert fetch.calls == [keys[:1]]


async def test_redis_down_fetches_everything_as_bypass_and_says_so(
    ns: str, keys: list[str]
) -> None:
    told: list[CacheUnavailable] = []
    async with batch_node(f"redis://127.0.0.1:{free_port()}/0", ns, listen=False) as a:
        fetch = Fetcher()
        got = await a.fill(keys[:3], read, fetch, failed=told.append)
        pending = len(a.leases._tasks)
    assert fetch.calls == [keys[:3]]
    assert {s for _, s in got.values()} == {BYPASS}
    assert len(told) == 1
    assert pending == 1  # the claim may have run before the failure: released in the background


async def test_redis_lost_after_the_claim_still_answers_and_releases_later(
    redis_url: str, ns: str, keys: list[str]
) -> None:
    async with batch_node(redis_url, ns, breaker=0.1) as a:
        fetch = Fetcher()
        fetch.gate.clear()
        flight = asyncio.create_task(a.fill(keys[:2], read, fetch))
        await wait_until(lambda: bool(fetch.calls))
        a.store.breaker.trip()  # Redis "fails" while the fetch runs: storing is skipped
        fetch.gate.set()
        got = await asyncio.wait_for(flight, 10)
        await wait_until(lambda: not a.leases._tasks)
        left = await locks_left(a, ns)
        stored = await a.store.client.exists(*keys[:2])
    assert {s for _, s in got.values()} == {BYPASS}
    assert left == [] and stored == 0


async def test_a_holders_provider_error_is_shared_with_the_batches_waiting_elsewhere(
    redis_url: str, ns: str, keys: list[str]
) -> None:
    """The holder's call fails for some of its keys (a 429 chunk): the batch waiting for any
    of those keys in another process fails with the same error (status, body, Retry-After),
    without a call of its own; keys that were fetched are stored; nothing of the failure is."""
    limited = ProviderError(
        "slow down",
        status_code=429,
        body={"message": "slow down", "type": "rate_limit", "code": "rate_limited"},
        headers={"Retry-After": "7"},
    )

    class HalfFails(Fetcher):
        async def __call__(self, asked: list[str]) -> Fetched[bytes]:
            self.calls.append(list(asked))
            await self.gate.wait()
            values = {k: b"v:" + k.encode() for k in asked[:1]}
            return Fetched(values, [(k, v, 60.0) for k, v in values.items()], error=limited)

    async with batch_node(redis_url, ns) as a, batch_node(redis_url, ns, poll=60) as b:
        failing, other = HalfFails(), Fetcher()
        failing.gate.clear()
        holder = asyncio.create_task(a.fill(keys[:3], read, failing))
        await wait_until(lambda: bool(failing.calls))
        waiter = asyncio.create_task(b.fill(keys[1:3], read, other))
        await wait_until(lambda: b.leases.notifier.waiting == 2)
        failing.gate.set()
        with pytest.raises(ProviderError) as held_error:
            await asyncio.wait_for(holder, 10)
        with pytest.raises(ProviderError) as shared_error:
            await asyncio.wait_for(waiter, 10)  # its poll is 60 s: woken by the failure
        stored = await a.store.client.mget(keys[:3])
        left = await locks_left(a, ns)
    assert held_error.value is limited
    shared = shared_error.value
    assert (shared.status_code, shared.headers) == (429, {"Retry-After": "7"})
    assert shared.envelope() == limited.envelope()
    assert other.calls == []
    assert stored == [b"v:" + keys[0].encode(), None, None]
    assert left == []
