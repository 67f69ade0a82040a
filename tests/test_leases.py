"""Leases on a real redis-server: each `node` is what one gateway process holds."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from genai_api.errors import ProviderError
from genai_api.leases import LocalLeases, RedisLeases
from genai_api.leases.notify import Notifier
from genai_api.leases.redis import CARRY_BYTES, HeldLease
from genai_api.store import budget
from genai_api.store.memory import MemoryStore
from genai_api.store.redis import RedisStore, redis_options
from tests.conftest import wait_until
from tests.redis_server import RedisServer, free_port

pytestmark = pytest.mark.redis


@asynccontextmanager
async def node(
    url: str,
    namespace: str,
    *,
    lease: float = 5.0,
    max_wait: float = 30.0,
    poll: float = 60.0,
    listen: bool = True,
    breaker: float = 1.0,
    carry: int = CARRY_BYTES,
) -> AsyncIterator[RedisLeases]:
    """One process's store and leases; `poll=60` means only a PUBLISH can wake a waiter."""
    options = redis_options(url, host="", port=0, password=None, db=0)
    store = RedisStore(options, timeout=0.5, max_connections=16, breaker_seconds=breaker)
    leases = RedisLeases(
        store,
        namespace=namespace,
        lease_seconds=lease,
        max_wait=max_wait,
        poll_seconds=poll,
        carry_bytes=carry,
    )
    if listen:
        leases.start()
        await wait_until(lambda: leases.notifier.subscribed)
    try:
        yield leases
    finally:
        await leases.aclose()
        await store.close()


@pytest.fixture
def ns() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def entry_key(ns: str) -> str:
    return f"{ns}:e:chat:anon:gpt-4o-mini:-:{'a' * 64}"


async def holder(client: aioredis.Redis, lock: str) -> str | None:
    """The token of the lease `lock` (``<token>|<deadline ms>``), None when there is none."""
    value = await client.get(lock)
    return None if value is None else value.decode().rsplit("|", 1)[0]


async def deadline_in(client: aioredis.Redis, lock: str) -> int:
    """Milliseconds from now (Redis's clock) to the deadline of the lease `lock`."""
    value = await client.get(lock)
    seconds, micros = await client.time()
    return int(value.decode().rsplit("|", 1)[1]) - (seconds * 1000 + micros // 1000)


def raw(stored: bytes) -> bytes:
    """The decode a flight passes to `claim`: here every stored value is usable as is."""
    return stored


async def test_first_claim_holds_a_lease_outside_the_entry_namespace(
    redis_url: str, ns: str
) -> None:
    key = entry_key(ns)
    client = aioredis.from_url(redis_url)
    async with node(redis_url, ns) as a:
        claim = await a.claim(key, raw)
        assert isinstance(claim, HeldLease) and claim.found is None and not claim.degraded
        assert a.notifier.waiting == 0  # a holder needs no doorbell
        lock = f"{ns}:lock:chat:anon:gpt-4o-mini:-:{'a' * 64}"
        assert claim.lock == lock
        # No TTL (volatile-* eviction never picks it); its deadline is in its value.
        assert await client.pttl(lock) == -1
        assert 0 < await deadline_in(client, lock) <= 5000
        async with claim:
            pass
        assert await client.exists(lock) == 0
    await client.aclose()


async def test_waiter_in_another_process_is_woken_by_the_publish(redis_url: str, ns: str) -> None:
    key = entry_key(ns)
    async with node(redis_url, ns) as a, node(redis_url, ns) as b:
        held = await a.claim(key, raw)
        waiter = asyncio.create_task(b.claim(key, raw))
        await wait_until(lambda: b.notifier.waiting == 1)
        await asyncio.sleep(0.1)
        assert not waiter.done()
        async with held:
            await a.store.set(key, b"answer", 60)
        got = await asyncio.wait_for(waiter, 10)  # its poll interval is 60 s
    assert (got.found, got.waited) == (b"answer", True)
    assert not isinstance(got, HeldLease)


async def test_waiter_polls_when_notifications_are_down(redis_url: str, ns: str) -> None:
    key = entry_key(ns)
    async with node(redis_url, ns) as a, node(redis_url, ns, poll=0.05, listen=False) as b:
        held = await a.claim(key, raw)
        waiter = asyncio.create_task(b.claim(key, raw))
        await asyncio.sleep(0.1)
        async with held:
            await a.store.set(key, b"answer", 60)
        got = await asyncio.wait_for(waiter, 10)
    assert got.found == b"answer"


async def test_failed_holder_hands_over_to_exactly_one_waiter(redis_url: str, ns: str) -> None:
    key = entry_key(ns)
    async with (
        node(redis_url, ns) as a,
        node(redis_url, ns) as b,
        node(redis_url, ns) as c,
        node(redis_url, ns) as d,
    ):
        held = await a.claim(key, raw)
        waiters = {asyncio.create_task(n.claim(key, raw)): n for n in (b, c, d)}
        await wait_until(lambda: all(n.notifier.waiting == 1 for n in (b, c, d)))
        with pytest.raises(RuntimeError):
            async with held:
                raise RuntimeError("provider failed")
        done, pending = await asyncio.wait(waiters, timeout=10, return_when="FIRST_COMPLETED")
        await asyncio.sleep(0.3)  # a second takeover, if the protocol allowed one, shows now
        assert len(done) == 1 and all(not t.done() for t in pending)
        (first,) = done
        taker = first.result()
        assert isinstance(taker, HeldLease)
        async with taker:
            await waiters[first].store.set(key, b"second try", 60)
        rest = await asyncio.wait_for(asyncio.gather(*pending), 10)
    assert [r.found for r in rest] == [b"second try", b"second try"]


async def test_dead_holders_lease_expires_then_one_waiter_takes_over(
    redis_url: str, ns: str
) -> None:
    key = entry_key(ns)
    async with node(redis_url, ns, poll=0.05) as b, node(redis_url, ns, poll=0.05) as c:
        # A holder that was SIGKILLed: its lease stays until it expires, nobody publishes.
        await b.store.client.set(b.lock_key(key), "dead-token", px=300)
        claims = [asyncio.create_task(n.claim(key, raw)) for n in (b, c)]
        done, pending = await asyncio.wait(claims, timeout=10, return_when="FIRST_COMPLETED")
        await asyncio.sleep(0.2)
        assert len(done) == 1 and not any(t.done() for t in pending)
        taker = done.pop().result()
        assert isinstance(taker, HeldLease)
        async with taker:
            await b.store.set(key, b"late answer", 60)
        (other,) = await asyncio.wait_for(asyncio.gather(*pending), 10)
    assert other.found == b"late answer"


async def test_lease_is_renewed_while_the_call_is_alive(redis_url: str, ns: str) -> None:
    key = entry_key(ns)
    # Renewed every 200 ms: a 300 ms gen-2 GC pause of the test process does not lose it.
    async with node(redis_url, ns, lease=0.6) as a, node(redis_url, ns, poll=0.05) as b:
        held = await a.claim(key, raw)
        async with held:
            waiter = asyncio.create_task(b.claim(key, raw))
            await asyncio.sleep(1.8)  # three lease lengths
            assert not waiter.done()
            assert await holder(a.store.client, held.lock) == held.token
            await a.store.set(key, b"slow answer", 60)
        got = await asyncio.wait_for(waiter, 10)
    assert got.found == b"slow answer"


async def test_a_stored_entry_is_answered_without_taking_the_lease(redis_url: str, ns: str) -> None:
    key = entry_key(ns)
    async with node(redis_url, ns) as a:
        await a.store.set(key, b"stored", 60)
        claim = await a.claim(key, raw)
        assert await a.store.client.exists(a.lock_key(key)) == 0
    assert not isinstance(claim, HeldLease)
    assert (claim.found, claim.waited, claim.degraded) == (b"stored", False, False)


async def test_an_entry_the_request_cannot_use_is_claimed_over(redis_url: str, ns: str) -> None:
    key = entry_key(ns)
    async with node(redis_url, ns) as a:
        await a.store.set(key, b"too old", 60)
        claim = await a.claim(key, lambda stored: None)  # e.g. older than its max-age
        assert isinstance(claim, HeldLease) and claim.found is None
        assert await holder(a.store.client, claim.lock) == claim.token
        async with claim:
            await claim.fill(a.store, key, b"fresh", 60)
        assert await a.store.client.get(key) == b"fresh"


async def test_fill_stores_releases_and_wakes_the_waiters(redis_url: str, ns: str) -> None:
    key = entry_key(ns)
    async with node(redis_url, ns) as a, node(redis_url, ns) as b:
        held = await a.claim(key, raw)
        assert isinstance(held, HeldLease)
        waiter = asyncio.create_task(b.claim(key, raw))
        await wait_until(lambda: b.notifier.waiting == 1)
        async with held:
            await held.fill(a.store, key, b"answer", 60)
            # Stored and released before the body even ends: nothing is left to release.
            assert await a.store.client.exists(held.lock, a.wait_key(key)) == 0
            assert 50_000 < await a.store.client.pttl(key) <= 60_000
            got = await asyncio.wait_for(waiter, 10)  # its poll interval is 60 s
        assert not a._tasks
    assert (got.found, got.waited) == (b"answer", True)


async def test_a_miss_nobody_waits_for_publishes_nothing(redis_url: str, ns: str) -> None:
    key = entry_key(ns)
    listener = aioredis.from_url(redis_url)
    pubsub = listener.pubsub()
    await pubsub.subscribe(f"{ns}:filled")
    assert (await pubsub.get_message(timeout=5))["type"] == "subscribe"
    async with node(redis_url, ns, poll=0.05, listen=False) as a:
        alone = await a.claim(key, raw)
        async with alone:
            await alone.fill(a.store, key, b"answer", 60)
        assert await pubsub.get_message(timeout=0.3) is None  # no process woke up for it
        failed = await a.claim(entry_key(ns).replace("a" * 64, "c" * 64), raw)
        async with failed:
            pass  # released without a store: still nobody to tell
        assert await pubsub.get_message(timeout=0.3) is None
        other = entry_key(ns).replace("a" * 64, "b" * 64)
        held = await a.claim(other, raw)
        waiter = asyncio.create_task(a.claim(other, raw))
        await wait_until(lambda: a.notifier.waiting == 1)
        await wait_until_flag(a, other)
        async with held:
            await held.fill(a.store, other, b"awaited", 60)
        message = await pubsub.get_message(timeout=5)
        assert (await waiter).found == b"awaited"  # woken by its poll tick: not subscribed
    await pubsub.aclose()
    await listener.aclose()
    # The waiter's wake-up: the key, then the entry it stored (small enough to come along).
    assert message is not None and message["data"] == other.encode() + b"\nawaited"


def count_claims(leases: RedisLeases) -> list[bool]:
    """Record each claim script `leases` runs (its `read` flag)."""
    calls: list[bool] = []
    claim_or_read = leases._claim_or_read

    async def counted(
        key: str, lock: str, token: str, *, read: bool, slide_ms: int = 0
    ) -> bytes | int:
        calls.append(read)
        return await claim_or_read(key, lock, token, read=read, slide_ms=slide_ms)

    leases._claim_or_read = counted  # type: ignore[method-assign]
    return calls


@pytest.mark.parametrize(("carry", "claims"), [(CARRY_BYTES, 2), (4, 3)])
async def test_the_wake_up_carries_a_small_entry_to_the_waiter(
    redis_url: str, ns: str, carry: int, claims: int
) -> None:
    """A waiting process gets the stored entry with the PUBLISH: no claim after waking (two
    claims: the one that found the lease taken, the one after registering the doorbell).
    An entry above `carry_bytes` is not carried: the waiter claims once more to read it."""
    key = entry_key(ns)
    async with node(redis_url, ns, carry=carry) as a, node(redis_url, ns, carry=carry) as b:
        held = await a.claim(key, raw)
        calls = count_claims(b)
        waiter = asyncio.create_task(b.claim(key, raw))
        await wait_until(lambda: b.notifier.waiting == 1)
        await wait_until_flag(a, key)
        async with held:
            await held.fill(a.store, key, b"answer", 60)
        got = await asyncio.wait_for(waiter, 10)  # its poll interval is 60 s
        assert (got.found, got.waited) == (b"answer", True)
        assert len(calls) == claims
        assert await a.store.client.exists(held.lock, a.wait_key(key)) == 0


async def test_a_carried_entry_the_request_cannot_use_is_claimed_over(
    redis_url: str, ns: str
) -> None:
    """The carried bytes go through the request's own decode: unusable ones (too old for
    its max-age, say) are not an answer; the waiter claims as if the entry were missing."""
    key = entry_key(ns)
    async with node(redis_url, ns) as a, node(redis_url, ns) as b:
        held = await a.claim(key, raw)
        waiter = asyncio.create_task(b.claim(key, lambda stored: None))
        await wait_until(lambda: b.notifier.waiting == 1)
        await wait_until_flag(a, key)
        async with held:
            await held.fill(a.store, key, b"stale", 60)
        got = await asyncio.wait_for(waiter, 10)
        assert isinstance(got, HeldLease) and got.found is None
        async with got:
            pass


def test_deliver_hands_a_carried_entry_to_the_watches_of_its_key() -> None:
    notifier = Notifier(aioredis.Redis().pubsub, "ch")
    with notifier.watch("k1") as one, notifier.watch("k2") as two:
        notifier.deliver(b'k1\n{"a": 1}\n')
        assert (one._event.is_set(), two._event.is_set()) == (True, False)
        assert one.take() == b'{"a": 1}\n' and one.take() is None
        notifier.deliver("k1 k2")  # a batch holder's keys: nothing carried
        assert two._event.is_set() and two.take() is None and one.take() is None


async def wait_until_flag(leases: RedisLeases, key: str) -> None:
    deadline = asyncio.get_running_loop().time() + 5
    while not await leases.store.client.exists(leases.wait_key(key)):
        assert asyncio.get_running_loop().time() < deadline, "the waiter never raised its flag"
        await asyncio.sleep(0.01)


async def test_fill_stores_but_keeps_another_holders_lease(redis_url: str, ns: str) -> None:
    key = entry_key(ns)
    async with node(redis_url, ns, lease=0.1) as a, node(redis_url, ns) as b:
        stale = await a.claim(key, raw)
        assert isinstance(stale, HeldLease)
        await asyncio.sleep(0.25)  # never entered, so never renewed: expired
        await a.store.client.delete(key)
        fresh = await b.claim(key, raw)
        assert isinstance(fresh, HeldLease)
        await stale.fill(a.store, key, b"late", 60)
        assert await holder(b.store.client, fresh.lock) == fresh.token
        assert await b.store.client.get(key) == b"late"
        async with fresh:
            pass


async def test_one_renewer_keeps_every_held_lease_and_drops_a_lost_one(
    redis_url: str, ns: str
) -> None:
    keys = [entry_key(ns), entry_key(ns).replace("a" * 64, "b" * 64)]
    async with node(redis_url, ns, lease=0.6) as a:
        one, two = [await a.claim(key, raw) for key in keys]
        assert isinstance(one, HeldLease) and isinstance(two, HeldLease)
        async with one, two:
            renewer = a._renewer
            assert renewer is not None
            # Another process took the second lease over (ours expired under us, say).
            await a.store.client.set(two.lock, "someone-else", px=10_000)
            await asyncio.sleep(1.5)  # 2.5 lease lengths
            assert a._renewer is renewer  # one task for both
            assert await holder(a.store.client, one.lock) == one.token
            assert a.held == {one.lock: one.token}
            assert await a.store.client.get(two.lock) == b"someone-else"
        assert await a.store.client.get(two.lock) == b"someone-else"  # not ours to release
        again = await a.claim(keys[0].replace("a" * 64, "d" * 64), raw)
        async with again:
            assert a._renewer is renewer  # still the one task, for every lease after


async def test_renewals_do_not_spend_the_requests_redis_budget(redis_url: str, ns: str) -> None:
    key = entry_key(ns)
    async with node(redis_url, ns, lease=0.6) as a:
        held = await a.claim(key, raw)
        spending = budget.begin()  # the request that holds it...
        spending.spent = True  # ...had a Redis failure since: it skips Redis from now on
        async with held:
            await asyncio.sleep(1.5)  # 2.5 lease lengths: renewed outside the request
            assert await holder(a.store.client, held.lock) == held.token


async def test_release_never_deletes_another_holders_lease(redis_url: str, ns: str) -> None:
    key = entry_key(ns)
    async with node(redis_url, ns, lease=0.1) as a, node(redis_url, ns) as b:
        stale = await a.claim(key, raw)
        assert isinstance(stale, HeldLease)
        await asyncio.sleep(0.25)  # never entered, so never renewed: expired
        fresh = await b.claim(key, raw)
        assert isinstance(fresh, HeldLease)
        await stale.__aexit__(None, None, None)
        assert await holder(b.store.client, fresh.lock) == fresh.token
        async with fresh:
            pass


async def test_redis_down_degrades_at_once(ns: str) -> None:
    key = entry_key(ns)
    async with node(f"redis://127.0.0.1:{free_port()}/0", ns, listen=False) as a:
        claim = await a.claim(key, raw)
        async with claim:
            pass
        again = await a.claim(key, raw)  # breaker open: no connection attempt
    assert (claim.degraded, claim.found, again.degraded) == (True, None, True)
    assert a.store.breaker.failures == 1


async def test_a_claim_that_failed_releases_the_lease_its_script_may_have_taken(
    redis_url: str, ns: str
) -> None:
    key = entry_key(ns)
    async with node(redis_url, ns, breaker=0.1) as a, node(redis_url, ns, poll=0.05) as b:
        # The claim script ran, but its answer came too late (a stalled worker timed out):
        # the lease is taken with the failing claim's token.
        lock, token = a.lock_key(key), f"{a._token_prefix}{a.issued + 1}"
        await a.store.client.set(lock, token, px=30_000)
        a.store.breaker.trip()  # the claim fails, as after that timeout
        claim = await a.claim(key, raw)
        assert claim.degraded and not isinstance(claim, HeldLease)
        # A waiter elsewhere is not left waiting for the whole lease: it takes over.
        taker = await asyncio.wait_for(b.claim(key, raw), 10)
        assert isinstance(taker, HeldLease)
        async with taker:
            pass
        await wait_until(lambda: a._sweeper is None)


async def test_waiter_gives_up_after_max_wait(redis_url: str, ns: str) -> None:
    key = entry_key(ns)
    async with node(redis_url, ns, max_wait=0.3, poll=0.05) as b:
        await b.store.client.set(b.lock_key(key), "stuck-token", px=10_000)
        claim = await asyncio.wait_for(b.claim(key, raw), 10)
    assert not isinstance(claim, HeldLease)
    assert (claim.found, claim.degraded) == (None, False)


async def test_release_is_retried_after_a_redis_blip(redis_url: str, ns: str) -> None:
    key = entry_key(ns)
    async with node(redis_url, ns, breaker=0.1) as a:
        held = await a.claim(key, raw)
        assert isinstance(held, HeldLease)
        async with held:
            a.store.breaker.trip()  # the release will find the breaker open
        assert await a.store.client.exists(held.lock) == 1
        await wait_until(lambda: not a._tasks)
        assert await a.store.client.exists(held.lock) == 0


async def test_scripts_are_loaded_at_start(redis_server: RedisServer, ns: str) -> None:
    client = aioredis.from_url(redis_server.url)
    async with node(redis_server.url, ns) as a:
        shas = [a._claim.sha, a._fill.sha, a._release.sha, a._renew.sha]
        await wait_until_true(lambda: client.script_exists(*shas))
    await client.aclose()


async def wait_until_true(check: Callable[[], Awaitable[list[bool]]]) -> None:
    deadline = asyncio.get_running_loop().time() + 5
    while not all(await check()):
        assert asyncio.get_running_loop().time() < deadline, "never became true"
        await asyncio.sleep(0.01)


async def test_notifier_resubscribes_after_redis_restart(redis_server: RedisServer) -> None:
    client = aioredis.from_url(redis_server.url, socket_timeout=0.5)
    notifier = Notifier(client.pubsub, "chan", confirm_seconds=0.5, retry_seconds=0.05)
    notifier.start()
    try:
        await wait_until(lambda: notifier.subscribed)
        redis_server.stop()
        await wait_until(lambda: not notifier.subscribed)
        redis_server.start()
        await wait_until(lambda: notifier.subscribed)
        with notifier.watch("k1") as watch:
            await client.publish("chan", "k1")
            assert await watch.wait(10)
    finally:
        await notifier.aclose()
        await client.aclose()


async def test_leases_work_with_password_and_database(
    tmp_path: Path, ns: str, redis_binary: None
) -> None:
    server = RedisServer(tmp_path, password="s3cret").start()
    url = f"redis://:s3cret@127.0.0.1:{server.port}/3"
    key = entry_key(ns)
    try:
        async with node(url, ns) as a, node(url, ns) as b:
            held = await a.claim(key, raw)
            waiter = asyncio.create_task(b.claim(key, raw))
            await wait_until(lambda: b.notifier.waiting == 1)
            async with held:
                await a.store.set(key, b"db3", 60)
            got = await asyncio.wait_for(waiter, 10)
            assert await b.store.client.exists(key) == 1
    finally:
        server.stop()
    assert got.found == b"db3"


async def test_memory_backend_claims_in_process_only() -> None:
    store = MemoryStore()
    leases = LocalLeases(store)
    assert (await leases.claim("k", raw)).found is None
    await store.set("k", b"stored", 60)
    assert (await leases.claim("k", raw)).found == b"stored"
    assert (await leases.claim("k", lambda stored: None)).found is None  # not usable
    assert leases.state == "process"
    await store.close()


async def test_a_holders_failure_reaches_its_waiters_and_a_cancelled_ones_does_not(
    redis_url: str, ns: str
) -> None:
    """`share_failure`: the waiter elsewhere gets the error (status, body, Retry-After) with
    its wake-up and calls nobody. Without it (a holder cancelled), the waiter takes over."""
    limited = ProviderError(
        "slow down", status_code=429, body={"message": "slow down"}, headers={"Retry-After": "7"}
    )
    key = entry_key(ns)
    async with node(redis_url, ns) as a, node(redis_url, ns) as b:
        held = await a.claim(key, raw)
        waiter = asyncio.create_task(b.claim(key, raw))
        await wait_until(lambda: b.notifier.waiting == 1)
        async with held:
            held.share_failure(limited)
        failed = await asyncio.wait_for(waiter, 10)  # its poll is 60 s: woken with the error
        assert await a.store.client.exists(held.lock) == 0
        again = await a.claim(key, raw)  # a later request: nothing stored, it calls
        waiter = asyncio.create_task(b.claim(key, raw))
        await wait_until(lambda: b.notifier.waiting == 1)
        await again.__aexit__(asyncio.CancelledError, asyncio.CancelledError(), None)
        taker = await asyncio.wait_for(waiter, 10)
        async with taker:
            pass
    assert failed.error is not None and failed.waited and failed.found is None
    assert (failed.error.status_code, failed.error.headers) == (429, {"Retry-After": "7"})
    assert failed.error.envelope() == limited.envelope()
    assert isinstance(again, HeldLease) and isinstance(taker, HeldLease)
