"""CACHE_SCOPE=tenant: one client key's entries, flights and keys are invisible to another.

Chat, completions and embeddings run through every test via `tests.endpoints.ENDPOINTS`
(prompt templates join by adding their `Endpoint`); streamed chat has tests of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import respx
from starlette.requests import Request

from genai_api.http.auth import ANONYMOUS, Authenticator
from tests.conftest import Running, make_settings, running
from tests.endpoints import (
    CHAT_ENDPOINT,
    ENDPOINTS,
    Endpoint,
    assert_envelope,
    each_completion_endpoint,
    each_endpoint,
    flights,
)
from tests.streaming_client import STREAM, HeldStream, chunk, sse

KEYS = "key-a,key-b"
A = {"Authorization": "Bearer key-a"}
B = {"Authorization": "Bearer key-b"}
SECRET = "test-tenant-secret"


async def _post(gw: Running, ep: Endpoint, headers: dict[str, str]) -> httpx.Response:
    return await gw.http.post(ep.path, json=ep.body, headers=headers)


@each_endpoint
async def test_an_entry_stored_for_one_tenant_is_never_served_to_another(
    ep: Endpoint, upstream: respx.MockRouter
) -> None:
    route = ep.mock(upstream)
    async with running(make_settings(gateway_api_keys=KEYS)) as gw:
        a1, b1, a2, b2 = [await _post(gw, ep, h) for h in (A, B, A, B)]
    assert [r.headers["x-cache"] for r in (a1, b1, a2, b2)] == ["MISS", "MISS", "HIT", "HIT"]
    assert route.call_count == 2
    assert (ep.mark(a2.json()), ep.mark(b2.json())) == (ep.mark(a1.json()), ep.mark(b1.json()))
    assert ep.mark(a1.json()) != ep.mark(b1.json())


@each_endpoint
async def test_a_waiter_from_another_tenant_never_joins_the_flight(
    ep: Endpoint, upstream: respx.MockRouter
) -> None:
    release = asyncio.Event()
    started = [asyncio.Event(), asyncio.Event(), asyncio.Event()]
    calls = itertools.count()

    async def held(request: httpx.Request) -> httpx.Response:
        n = next(calls)
        started[n].set()
        await release.wait()
        return httpx.Response(200, json=ep.answer(n))

    route = ep.mock(upstream, side_effect=held)
    async with running(make_settings(gateway_api_keys=KEYS)) as gw:
        a = asyncio.create_task(_post(gw, ep, A))
        await asyncio.wait_for(started[0].wait(), 5)  # A's provider call is open
        b = asyncio.create_task(_post(gw, ep, B))
        # Had B joined A's flight, its own provider call would never start.
        await asyncio.wait_for(started[1].wait(), 5)
        assert flights(gw) == 2
        release.set()
        a_answer, b_answer = await a, await b
        assert flights(gw) == 0
    assert (a_answer.headers["x-cache"], b_answer.headers["x-cache"]) == ("MISS", "MISS")
    assert ep.mark(a_answer.json()) != ep.mark(b_answer.json())
    assert route.call_count == 2


@pytest.mark.redis
@each_completion_endpoint  # embeddings take no fleet-wide lease (yet): nothing to wait on
async def test_another_tenant_never_waits_on_a_lease_held_by_another_process(
    ep: Endpoint, upstream: respx.MockRouter, redis_url: str
) -> None:
    # Two gateways on one Redis stand for two processes of a fleet.
    release = asyncio.Event()
    started = [asyncio.Event() for _ in range(3)]
    calls = itertools.count()

    async def held(request: httpx.Request) -> httpx.Response:
        n = next(calls)
        started[n].set()
        await release.wait()
        return httpx.Response(200, json=ep.answer(n))

    route = ep.mock(upstream, side_effect=held)
    settings = make_settings(cache_backend="redis", redis_url=redis_url, gateway_api_keys=KEYS)
    async with running(settings) as one, running(settings) as two:
        a = asyncio.create_task(_post(one, ep, A))
        await asyncio.wait_for(started[0].wait(), 5)  # process one holds A's lease
        b = asyncio.create_task(_post(two, ep, B))
        await asyncio.wait_for(started[1].wait(), 5)  # B did not wait on A's lease
        a_again = asyncio.create_task(_post(two, ep, A))  # control: this one must wait
        async with asyncio.timeout(5):
            while flights(two) < 2:  # noqa: ASYNC110 - no event marks "waiting on a lease"
                await asyncio.sleep(0.005)
        release.set()
        answers = [await a, await b, await a_again]
    assert [r.headers["x-cache"] for r in answers] == ["MISS", "MISS", "COALESCED"]
    marks = [ep.mark(r.json()) for r in answers]
    assert marks[2] == marks[0] != marks[1]
    assert route.call_count == 2


def _visible(ep: Endpoint, answer: httpx.Response) -> dict[str, Any]:
    """Everything in an answer that could tell a client about the cache."""
    return {
        "status": answer.status_code,
        "headers": {
            name: value
            for name, value in answer.headers.items()
            if name.startswith("x-cache") or name == "age"
        },
        "from": ep.mark(answer.json()),
    }


@each_endpoint
async def test_another_tenants_entry_changes_nothing_in_my_answer(
    ep: Endpoint, upstream: respx.MockRouter
) -> None:
    # B's first request looks the same whether or not A has this very entry: no oracle.
    ep.mock(upstream, side_effect=lambda request: httpx.Response(200, json=ep.answer(0)))
    settings = make_settings(gateway_api_keys=KEYS, tenant_hash_secret=SECRET)
    async with running(settings) as gw:
        a = await _post(gw, ep, A)
        b_after_a = await _post(gw, ep, B)
    async with running(settings.model_copy(update={"cache_namespace": "fresh"})) as gw:
        b_alone = await _post(gw, ep, B)
    assert _visible(ep, b_after_a) == _visible(ep, b_alone)
    assert b_after_a.headers["x-cache"] == "MISS" and "age" not in b_after_a.headers
    assert a.headers["x-cache-key"] != b_after_a.headers["x-cache-key"]


@each_endpoint
async def test_cache_key_depends_on_the_server_secret(
    ep: Endpoint, upstream: respx.MockRouter
) -> None:
    # Without the secret a client cannot compute another tenant's X-Cache-Key.
    ep.mock(upstream)
    keys = []
    for secret in ("secret-one", "secret-two"):
        async with running(make_settings(gateway_api_keys=KEYS, tenant_hash_secret=secret)) as gw:
            keys.append((await _post(gw, ep, A)).headers["x-cache-key"])
    assert keys[0] != keys[1]


def _request(authorization: str | None) -> Request:
    headers = [(b"authorization", authorization.encode())] if authorization else []
    return Request({"type": "http", "headers": headers})


def _hmac_id(key: str) -> str:
    return hmac.new(SECRET.encode(), key.encode(), hashlib.sha256).hexdigest()[:24]


def test_tenant_id_is_an_hmac_of_the_key_under_the_secret() -> None:
    auth = Authenticator(("key-a",), None, scope="tenant", secret=SECRET)
    expected = _hmac_id("key-a")
    assert auth.client(_request("Bearer key-a")) == expected
    assert expected != hashlib.sha256(b"key-a").hexdigest()[:24]  # keyed, not a plain hash
    other = Authenticator(("key-a",), None, scope="tenant", secret="another-secret")
    assert other.client(_request("Bearer key-a")) != expected


def test_open_gateway_tells_bearers_apart_and_pools_anonymous_callers() -> None:
    auth = Authenticator((), None, scope="tenant", secret=SECRET)
    x, y = auth.client(_request("Bearer x")), auth.client(_request("Bearer y"))
    assert x != y and "x" not in (x, y)
    assert auth.client(_request(None)) == auth.client(_request("Basic abc")) == ANONYMOUS


@pytest.mark.redis
async def test_raw_keys_never_reach_redis_keys_entries_or_stats(
    upstream: respx.MockRouter, redis_url: str
) -> None:
    for ep in ENDPOINTS:
        ep.mock(upstream)
    raw_keys = ("sk-client-aaaaaaaa", "sk-client-bbbbbbbb")
    settings = make_settings(
        cache_backend="redis",
        redis_url=redis_url,
        gateway_api_keys=",".join(raw_keys),
        tenant_hash_secret=SECRET,
    )
    async with running(settings) as gw:
        for key in raw_keys:
            for ep in ENDPOINTS:
                answer = await _post(gw, ep, {"Authorization": f"Bearer {key}"})
                assert answer.status_code == 200
        stats = (await gw.http.get("/v1/cache/stats")).content
    client = aioredis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{settings.cache_namespace}:*")]
        values = [await _value(client, k) for k in keys]
    finally:
        await client.aclose()
    # The savings counters and the owners of upstream objects (the response ids the
    # Responses API served) live beside the entries.
    stored = [k for k in keys if b":stats:" not in k and b":own:" not in k]
    assert len(stored) == 2 * len(ENDPOINTS)
    assert len([k for k in keys if b":own:" in k]) == 2  # call-0 and call-1, one per tenant
    assert len(keys) > len(stored)
    tenants = {k.decode().split(":")[3] for k in stored}
    assert tenants == {_hmac_id(k) for k in raw_keys}
    for blob in [*keys, *(v for v in values if v), stats]:
        assert not any(k.encode() in blob for k in raw_keys)


async def _value(client: aioredis.Redis, key: bytes) -> bytes:
    """Everything a key holds, whatever its type (entries are strings, counters hashes, ...)."""
    kind = await client.type(key)
    if kind == b"hash":
        return b" ".join(b"%s=%s" % kv for kv in (await client.hgetall(key)).items())
    if kind == b"set":
        return b" ".join(await client.smembers(key))
    if kind == b"zset":  # the stats index: key names by the time they are due
        return b" ".join(await client.zrange(key, 0, -1))
    return bytes(await client.get(key) or b"")


@each_endpoint
@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic a2V5LWE=", "Bearer ", "key-a"])
async def test_missing_or_wrong_client_key_is_401(
    ep: Endpoint, upstream: respx.MockRouter, header: str | None
) -> None:
    route = ep.mock(upstream)
    async with running(make_settings(gateway_api_keys=KEYS)) as gw:
        headers = {"Authorization": header} if header is not None else {}
        answer = await gw.http.post(ep.path, json=ep.body, headers=headers)
        models = await gw.http.get("/v1/models", headers=headers)
    assert assert_envelope(answer, 401)["code"] == "invalid_api_key"
    assert_envelope(models, 401)
    # RFC 9110: a 401 names the scheme the client should use (CONTRACT §5).
    assert answer.headers["www-authenticate"] == models.headers["www-authenticate"] == "Bearer"
    assert route.call_count == 0
    assert b"key-a" not in answer.content and b"wrong" not in answer.content


async def test_admin_key_is_not_a_client_key(upstream: respx.MockRouter) -> None:
    CHAT_ENDPOINT.mock(upstream)
    settings = make_settings(gateway_api_keys=KEYS, admin_api_key="admin-secret")
    async with running(settings) as gw:
        answer = await gw.http.post(
            CHAT_ENDPOINT.path,
            json=CHAT_ENDPOINT.body,
            headers={"Authorization": "Bearer admin-secret"},
        )
    assert_envelope(answer, 401)


def test_memory_for_bearer_ids_stays_bounded_for_huge_tokens() -> None:
    # An open gateway hashes any bearer; huge ones must not pile up in the id cache.
    auth = Authenticator((), None, scope="tenant", secret=SECRET)
    huge = [f"{i}-" + "x" * 65_536 for i in range(50)]
    ids = {auth.client(_request(f"Bearer {token}")) for token in huge}
    assert len(ids) == 50
    assert auth._cached_tenant_id.cache_info().currsize == 0
    assert auth.client(_request("Bearer short")) == _hmac_id("short")
    assert auth._cached_tenant_id.cache_info().currsize == 1


def _streamed_answer(n: int) -> bytes:
    return sse(chunk({"role": "assistant", "content": f"call-{n}"}), chunk(finish="stop"))


async def test_a_streamed_entry_is_never_replayed_to_another_tenant(
    upstream: respx.MockRouter,
) -> None:
    calls = itertools.count()
    route = upstream.post("/chat/completions").mock(
        side_effect=lambda request: httpx.Response(
            200,
            headers={"content-type": "text/event-stream"},
            content=_streamed_answer(next(calls)),
        )
    )
    async with running(make_settings(gateway_api_keys=KEYS)) as gw:
        answers = [
            await gw.http.post(CHAT_ENDPOINT.path, json=STREAM, headers=who) for who in (A, B, A, B)
        ]
    assert [r.headers["x-cache"] for r in answers] == ["MISS", "MISS", "HIT", "HIT"]
    assert ["call-0" in r.text for r in answers] == [True, False, True, False]
    assert ["call-1" in r.text for r in answers] == [False, True, False, True]
    assert route.call_count == 2


async def test_a_streamed_flight_is_never_joined_by_another_tenant(
    upstream: respx.MockRouter,
) -> None:
    held, second = HeldStream(), asyncio.Event()
    calls = itertools.count()

    def answer(request: httpx.Request) -> httpx.Response:
        if next(calls) == 0:
            return held(request)
        second.set()
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=_streamed_answer(1)
        )

    route = upstream.post("/chat/completions").mock(side_effect=answer)
    async with running(make_settings(gateway_api_keys=KEYS)) as gw:
        a = asyncio.create_task(gw.http.post(CHAT_ENDPOINT.path, json=STREAM, headers=A))
        await asyncio.wait_for(held.called.wait(), 5)  # A's stream is open upstream
        b = asyncio.create_task(gw.http.post(CHAT_ENDPOINT.path, json=STREAM, headers=B))
        await asyncio.wait_for(second.wait(), 5)  # B made its own call
        held.send(chunk({"role": "assistant", "content": "call-0"}), chunk(finish="stop"))
        held.end()
        a_answer, b_answer = await a, await b
    assert (a_answer.headers["x-cache"], b_answer.headers["x-cache"]) == ("MISS", "MISS")
    assert "call-0" in a_answer.text and "call-0" not in b_answer.text
    assert "call-1" in b_answer.text
    assert route.call_count == 2
