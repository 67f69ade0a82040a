"""CONTRACT §6: what works on one Redis works the same on a Redis Cluster and on a Sentinel-
guarded primary. Each test runs once per topology (`topology` fixture): one server, the
session's 3-primary + 3-replica cluster, the session's primary + replica + 3 sentinels.

Two gateways in one test are two apps with their own store, leases, L1 and subscriptions,
as two processes would have (`tests/test_topology_fleet.py` runs real processes).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest
import respx

from genai_api.apis import CHAT as CHAT_API
from genai_api.controls import parse_controls
from genai_api.keys import request_key
from tests.conftest import CHAT, Running, chat_response, make_settings, running, wait_until
from tests.embeddings_provider import Provider, assert_vectors, embed

pytestmark = pytest.mark.redis


def settings(topology: dict[str, Any], **extra: Any) -> Any:
    return make_settings(**topology, **extra)


async def _chat(gw: Running, body: dict[str, Any] | None = None, key: str = "client-key") -> Any:
    answer = await gw.http.post(
        "/v1/chat/completions", json=body or CHAT, headers={"Authorization": f"Bearer {key}"}
    )
    assert answer.status_code == 200, answer.text
    return answer


async def _entry_keys(gw: Running) -> list[str]:
    """Every cache entry of the gateway's namespace, on every primary."""
    store = gw.gateway.store
    client = store.client
    pattern = f"{gw.gateway.settings.cache_namespace}:e:*"
    if gw.gateway.settings.redis_mode != "cluster":
        return [k.decode() async for k in client.scan_iter(match=pattern, count=1000)]
    keys: list[str] = []
    for node in client.get_primaries():
        cursor = None
        while cursor != 0:
            cursors, found = await client.scan(
                cursor or 0, match=pattern, count=1000, target_nodes=node
            )
            cursor = cursors[node.name]
            keys += [k.decode() for k in found]
    return keys


async def test_an_identical_request_is_an_exact_hit_with_the_same_key(
    upstream: respx.MockRouter, topology: dict[str, Any]
) -> None:
    route = upstream.post("/chat/completions").mock(
        return_value=httpx.Response(200, json=chat_response())
    )
    async with running(settings(topology)) as gw:
        miss = await _chat(gw)
        hits = [await _chat(gw) for _ in range(3)]
        stored = await _entry_keys(gw)
    assert miss.headers["x-cache"] == "MISS"
    assert [h.headers["x-cache"] for h in hits] == ["HIT"] * 3
    assert route.call_count == 1
    tenant = gw.gateway.auth.tenant_of("client-key")
    expected = request_key("chat.completions", dict(CHAT), tenant=tenant)
    assert {h.headers["x-cache-key"] for h in [miss, *hits]} == {expected}  # as on one Redis
    (key,) = stored
    assert key.endswith(
        "{" + expected + "}" if topology.get("redis_mode") == "cluster" else expected
    )


async def test_embedding_inputs_hit_one_by_one_across_shards(
    upstream: respx.MockRouter, topology: dict[str, Any]
) -> None:
    provider = Provider()
    upstream.post("/embeddings").mock(side_effect=provider)
    first = [f"input {i}" for i in range(24)]  # spread over every primary of a cluster
    second = [*first[::2], *(f"new {i}" for i in range(6))]
    async with running(settings(topology)) as gw:
        one = await embed(gw, first, encoding_format="base64")
        two = await embed(gw, second, encoding_format="base64")
        three = await embed(gw, second)
    assert one.headers["x-cache"] == "MISS" and one.headers["x-cache-misses"] == "24"
    assert (two.headers["x-cache-hits"], two.headers["x-cache-misses"]) == ("12", "6")
    assert three.headers["x-cache"] == "HIT" and three.headers["x-cache-hits"] == "18"
    assert provider.calls == [first, [f"new {i}" for i in range(6)]]
    assert_vectors(two, second)
    assert_vectors(three, second)


async def test_two_gateways_make_one_provider_call_for_identical_misses(
    upstream: respx.MockRouter, topology: dict[str, Any]
) -> None:
    release, called = asyncio.Event(), asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        called.set()
        await release.wait()
        return httpx.Response(200, json=chat_response())

    route = upstream.post("/chat/completions").mock(side_effect=slow)
    shared = settings(topology)
    async with running(shared) as one, running(shared) as two:
        await wait_until(lambda: one.gateway.pipeline.leases.state == "fleet")
        await wait_until(lambda: two.gateway.pipeline.leases.state == "fleet")
        answers = [asyncio.create_task(_chat(gw)) for gw in [one, two] * 10]
        await asyncio.wait_for(called.wait(), 5)
        await asyncio.sleep(0.3)  # every request is waiting on the one call
        release.set()
        done = await asyncio.gather(*answers)
    assert route.call_count == 1
    statuses = Counter(a.headers["x-cache"] for a in done)
    assert statuses["MISS"] == 1 and statuses["COALESCED"] + statuses["HIT"] == 19


async def test_a_lease_nobody_fills_is_taken_over_after_it_expires(
    upstream: respx.MockRouter, topology: dict[str, Any]
) -> None:
    route = upstream.post("/chat/completions").mock(
        return_value=httpx.Response(200, json=chat_response())
    )
    async with running(settings(topology, lease_seconds=1.0)) as gw:
        await wait_until(lambda: gw.gateway.pipeline.leases.state == "fleet")
        leases = gw.gateway.pipeline.leases
        tenant = gw.gateway.auth.tenant_of("client-key")
        call = gw.gateway.pipeline.prepare(
            CHAT_API,
            dict(CHAT),
            model=gw.gateway.models.get(CHAT["model"]),
            tenant=tenant,
            controls=parse_controls({}, None, max_ttl=3600),
        )
        # A holder that died holding the lease: nobody renews, fills or releases it.
        dead = await leases.claim(call.skey, lambda stored: None)
        lock = leases.lock_key(call.skey)
        assert await gw.gateway.store.client.pttl(lock) == -1  # no TTL: never evicted
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer = await _chat(gw)
        took = loop.time() - started
        after = await gw.gateway.store.client.exists(lock)
        # Another dead holder's lease, on a key nobody asks for again: DELETE /v1/cache
        # sweeps it once its deadline has passed (every primary of a cluster is scanned).
        other, alive = (
            gw.gateway.pipeline.prepare(
                CHAT_API,
                {**CHAT, "messages": [{"role": "user", "content": text}]},
                model=gw.gateway.models.get(CHAT["model"]),
                tenant=tenant,
                controls=parse_controls({}, None, max_ttl=3600),
            ).skey
            for text in ("never asked again", "still being answered")
        )
        await leases.claim(other, lambda stored: None)
        live = await leases.claim(alive, lambda stored: None)
        async with live:  # a live holder's lease is renewed, and stays
            await asyncio.sleep(1.2)
            await gw.http.request("DELETE", "/v1/cache")
            swept = await gw.gateway.store.client.exists(leases.lock_key(other))
            kept = await gw.gateway.store.client.exists(leases.lock_key(alive))
    assert dead.found is None and not dead.degraded
    assert answer.headers["x-cache"] == "MISS" and route.call_count == 1
    assert 0.5 < took < 1.0 + 2.0  # waited for the lease, then took over
    assert after == 0  # the taker's fill released it
    assert (swept, kept) == (0, 1)


async def test_stats_are_totals_of_every_gateway(
    upstream: respx.MockRouter, topology: dict[str, Any]
) -> None:
    upstream.post("/chat/completions").mock(
        return_value=httpx.Response(200, json=chat_response(prompt=10, completion=5))
    )
    shared = settings(topology)
    async with running(shared) as one, running(shared) as two:
        await _chat(one)  # a miss
        for gw in (one, two, one, two):
            await _chat(gw)  # four hits
        await one.gateway.accounting.flush()
        await two.gateway.accounting.flush()
        doc = (await one.http.get("/v1/cache/stats")).json()
    assert (doc["hits"], doc["misses"]) == (4, 1)
    assert doc["tokens_saved"]["total"] == 60
    assert doc["by_model"]["gpt-4o-mini"]["hits"] == 4


async def test_a_scoped_delete_removes_only_what_it_names_on_every_primary(
    upstream: respx.MockRouter, topology: dict[str, Any]
) -> None:
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    async with running(settings(topology)) as gw:
        for i in range(12):  # entries on every primary of a cluster
            for model in ("gpt-4o-mini", "gpt-4o"):
                body = {**CHAT, "model": model, "seed": i}
                await _chat(gw, body)
        kept_key = (await _chat(gw, {**CHAT, "model": "gpt-4o", "seed": 3})).headers["x-cache-key"]
        gone_key = (await _chat(gw, {**CHAT, "seed": 3})).headers["x-cache-key"]
        one = await gw.http.request("DELETE", "/v1/cache", json={"key": kept_key})
        by_model = await gw.http.request("DELETE", "/v1/cache", json={"model": "gpt-4o-mini"})
        left = await _entry_keys(gw)
        again = await _chat(gw, {**CHAT, "seed": 3})
    assert one.json() == {"deleted": 1}
    assert by_model.json() == {"deleted": 12}
    assert len(left) == 11 and all(":gpt-4o:" in k for k in left)
    assert again.headers["x-cache"] == "MISS" and again.headers["x-cache-key"] == gone_key


async def test_one_tenants_entry_is_never_served_to_another(
    upstream: respx.MockRouter, topology: dict[str, Any]
) -> None:
    route = upstream.post("/chat/completions").mock(
        return_value=httpx.Response(200, json=chat_response())
    )
    keys = "key-a,key-b"
    async with running(settings(topology, gateway_api_keys=keys)) as gw:
        a = await _chat(gw, key="key-a")
        b = await _chat(gw, key="key-b")
        a_again = await _chat(gw, key="key-a")
    assert [a.headers["x-cache"], b.headers["x-cache"]] == ["MISS", "MISS"]
    assert a_again.headers["x-cache"] == "HIT" and route.call_count == 2


async def test_a_delete_on_one_gateway_clears_the_l1_of_another(
    upstream: respx.MockRouter, topology: dict[str, Any]
) -> None:
    route = upstream.post("/chat/completions").mock(
        return_value=httpx.Response(200, json=chat_response())
    )
    shared = settings(topology, cache_l1_seconds=30.0)
    async with running(shared) as a, running(shared) as b:
        l1_a, l1_b = a.gateway.store, b.gateway.store
        await wait_until(lambda: l1_a.listening and l1_b.listening)
        await _chat(a)
        assert [(await _chat(b)).headers["x-cache"] for _ in range(3)] == ["HIT"] * 3
        assert l1_b.hits == 2  # b answers from its L1
        epoch = l1_b.l1.epoch
        deleted = await a.http.request("DELETE", "/v1/cache")
        await wait_until(lambda: l1_b.l1.epoch != epoch)  # the PUBLISH reached b
        after = await _chat(b)
    assert deleted.json() == {"deleted": 1}
    assert after.headers["x-cache"] == "MISS" and route.call_count == 2


async def test_a_no_cache_refresh_on_one_gateway_is_seen_by_the_l1_of_another(
    upstream: respx.MockRouter, topology: dict[str, Any]
) -> None:
    upstream.post("/chat/completions").mock(
        side_effect=[
            httpx.Response(200, json=chat_response("first")),
            httpx.Response(200, json=chat_response("refreshed")),
        ]
    )
    shared = settings(topology, cache_l1_seconds=30.0)
    async with running(shared) as a, running(shared) as b:
        l1_b = b.gateway.store
        await wait_until(lambda: a.gateway.store.listening and l1_b.listening)
        await _chat(a)
        held = [await _chat(b) for _ in range(2)]
        assert l1_b.hits == 1
        epoch = l1_b.l1.epoch
        refresh = await a.http.post(
            "/v1/chat/completions",
            json=CHAT,
            headers={"Cache-Control": "no-cache", "Authorization": "Bearer client-key"},
        )
        await wait_until(lambda: l1_b.l1.epoch != epoch)  # SET and PUBLISH, one round trip
        seen = await _chat(b)
    content = [r.json()["choices"][0]["message"]["content"] for r in [*held, refresh, seen]]
    assert content == ["first", "first", "refreshed", "refreshed"]
    assert seen.headers["x-cache"] == "HIT"


async def test_a_burst_past_the_pool_waits_for_a_connection_instead_of_bypassing(
    upstream: respx.MockRouter, topology: dict[str, Any]
) -> None:
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    small = settings(topology, redis_max_connections=6, cache_l1_max_bytes=0)
    async with running(small) as gw:
        for i in range(24):
            await _chat(gw, {**CHAT, "seed": i})
        hits = await asyncio.gather(*(_chat(gw, {**CHAT, "seed": i}) for i in range(24)))
    assert Counter(h.headers["x-cache"] for h in hits) == {"HIT": 24}
