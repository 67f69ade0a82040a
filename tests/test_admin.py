"""Admin endpoints: who may call them, and invalidation that removes exactly what it names.

The invalidation tests run on a real redis-server holding 200,000 unrelated keys (plus
look-alikes of our own keys) and check, through Redis' own command statistics, that the
deletion used SCAN + UNLINK and never KEYS or FLUSHDB.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import respx

from genai_api.apis import CHAT as CHAT_API
from genai_api.controls import DEFAULT_CONTROLS
from tests.conftest import (
    CHAT,
    Running,
    chat_response,
    completion_response,
    make_settings,
    running,
    stats_doc,
)
from tests.embeddings_provider import Provider as EmbeddingsProvider
from tests.endpoints import ENDPOINTS, assert_envelope, stored_keys
from tests.redis_server import RedisServer, require_redis

# Every route behind the admin key (/metrics with METRICS_REQUIRE_ADMIN=true, as configured in
# these tests). /dashboard is a static page holding no data: see its test below.
ADMIN_ROUTES = [("GET", "/v1/cache/stats"), ("DELETE", "/v1/cache"), ("GET", "/metrics")]
each_admin_route = pytest.mark.parametrize(
    ("method", "path"), ADMIN_ROUTES, ids=[f"{m} {p}" for m, p in ADMIN_ROUTES]
)
ADMIN_KEY = "admin-secret-key"
CLIENT_KEYS = "key-a,key-b"
SECRET = "admin-test-secret"
UNRELATED = 200_000


@pytest.fixture
def provider(upstream: respx.MockRouter) -> None:
    for ep in ENDPOINTS:
        ep.mock(upstream)


@each_admin_route
@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (None, 401),
        ("Bearer wrong-key", 401),
        (f"Basic {ADMIN_KEY}", 401),
        (ADMIN_KEY, 401),
        ("Bearer key-a", 403),
        (f"Bearer {ADMIN_KEY}", 200),
    ],
    ids=["missing", "wrong", "basic-scheme", "no-scheme", "client-key", "admin-key"],
)
async def test_admin_routes_need_the_admin_key(
    provider: None, method: str, path: str, authorization: str | None, status: int
) -> None:
    settings = make_settings(
        gateway_api_keys=CLIENT_KEYS, admin_api_key=ADMIN_KEY, metrics_require_admin=True
    )
    headers = {"Authorization": authorization} if authorization else {}
    async with running(settings) as gw:
        answer = await gw.http.request(method, path, headers=headers)
    if status == 200:
        assert answer.status_code == 200, answer.text
    else:
        error = assert_envelope(answer, status)
        assert ADMIN_KEY not in answer.text
        assert error["code"] == ("admin_only" if status == 403 else "invalid_api_key")
        expected = "Bearer" if status == 401 else None
        assert answer.headers.get("www-authenticate") == expected


@each_admin_route
async def test_admin_routes_take_a_client_key_without_an_admin_key(
    provider: None, method: str, path: str
) -> None:
    settings = make_settings(gateway_api_keys=CLIENT_KEYS, metrics_require_admin=True)
    async with running(settings) as gw:
        answer = await gw.http.request(method, path, headers={"Authorization": "Bearer key-a"})
    assert answer.status_code == 200, answer.text


@each_admin_route
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key"], ids=["missing", "wrong"])
async def test_admin_routes_need_a_client_key_when_keys_are_required_and_no_admin_key_is_set(
    provider: None, method: str, path: str, authorization: str | None
) -> None:
    settings = make_settings(gateway_api_keys=CLIENT_KEYS, metrics_require_admin=True)
    headers = {"Authorization": authorization} if authorization else {}
    async with running(settings) as gw:
        await gw.http.post(
            "/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer key-a"}
        )
        answer = await gw.http.request(method, path, headers=headers)
        entries = stored_keys(gw)
    assert assert_envelope(answer, 401)["code"] == "invalid_api_key"
    assert len(entries) == 1  # nothing was deleted


@each_admin_route
async def test_admin_routes_are_open_on_an_open_gateway_without_an_admin_key(
    provider: None, method: str, path: str
) -> None:
    async with running(make_settings(metrics_require_admin=True)) as gw:
        answer = await gw.http.request(method, path)
    assert answer.status_code == 200, answer.text


async def test_metrics_are_open_by_default_and_hold_no_keys_or_prompts(provider: None) -> None:
    settings = make_settings(gateway_api_keys=CLIENT_KEYS, admin_api_key=ADMIN_KEY)
    body = {**CHAT, "messages": [{"role": "user", "content": "secret-prompt-words"}]}
    async with running(settings) as gw:
        await gw.http.post(
            "/v1/chat/completions", json=body, headers={"Authorization": "Bearer key-a"}
        )
        metrics = await gw.http.get("/metrics")
    assert metrics.status_code == 200
    for secret in ("key-a", ADMIN_KEY, "secret-prompt-words"):
        assert secret not in metrics.text


async def test_dashboard_page_holds_no_data(provider: None) -> None:
    # Served without a key (a browser cannot send a bearer on navigation): so it must be
    # the same bytes whatever the cache holds; its numbers come from the admin stats API.
    settings = make_settings(gateway_api_keys=CLIENT_KEYS, admin_api_key=ADMIN_KEY)
    async with running(settings) as gw:
        before = await gw.http.get("/dashboard")
        await gw.http.post(
            "/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer key-a"}
        )
        after = await gw.http.get("/dashboard")
    assert before.status_code == 200
    assert before.content == after.content
    assert "default-src 'none'" in after.headers["content-security-policy"]


async def test_refused_invalidation_deletes_nothing(provider: None) -> None:
    settings = make_settings(gateway_api_keys=CLIENT_KEYS, admin_api_key=ADMIN_KEY)
    client = {"Authorization": "Bearer key-a"}
    async with running(settings) as gw:
        await gw.http.post("/v1/chat/completions", json=CHAT, headers=client)
        answer = await gw.http.request("DELETE", "/v1/cache", headers=client)
        kept = stored_keys(gw)
    assert_envelope(answer, 403)
    assert len(kept) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"[1]",
        b"{",
        b'{"color": "red"}',
        b'{"model": 5}',
        b'{"model": ""}',
        b'{"key": "not-a-digest"}',
        b'{"key": "' + b"g" * 64 + b'"}',
    ],
)
async def test_malformed_invalidation_is_400_and_deletes_nothing(
    provider: None, body: bytes
) -> None:
    async with running(make_settings()) as gw:
        await gw.http.post("/v1/chat/completions", json=CHAT)
        answer = await gw.http.request("DELETE", "/v1/cache", content=body)
        kept = stored_keys(gw)
    assert_envelope(answer, 400)
    assert len(kept) == 1


@pytest.mark.parametrize("field", ["model", "prompt", "tenant"])
@pytest.mark.parametrize("value", ["*", "?*", "[a-z]*", "gpt-4o-mini*", "*:*"])
async def test_glob_characters_in_filters_are_literal(
    provider: None, field: str, value: str
) -> None:
    async with running(make_settings()) as gw:
        await gw.http.post("/v1/chat/completions", json=CHAT)
        answer = await gw.http.request("DELETE", "/v1/cache", json={field: value})
        kept = stored_keys(gw)
    assert answer.json() == {"deleted": 0}
    assert len(kept) == 1


# --- invalidation on a Redis with 200,000 unrelated keys -------------------------------

# Fills Redis server-side in MSET batches: 200,000 keys in about a second.
_FILL = """
local n, prefix = tonumber(ARGV[1]), ARGV[2]
local batch = {}
for i = 1, n do
  batch[#batch + 1] = prefix .. i
  batch[#batch + 1] = 'x'
  if #batch >= 2000 or i == n then
    redis.call('MSET', unpack(batch))
    batch = {}
  end
end
return n
"""


@pytest.fixture(scope="module")
def big_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of this module's own, holding 200,000 keys that are not ours."""
    if not shutil.which("redis-server"):
        require_redis()
    server = RedisServer(tmp_path_factory.mktemp("big-redis")).start()
    try:
        import redis

        client = redis.Redis.from_url(server.url)
        client.eval(_FILL, 0, UNRELATED, "unrelated:")
        client.close()
        yield server.url
    finally:
        server.stop()


def _tenant(key: str) -> str:
    return hmac.new(SECRET.encode(), key.encode(), hashlib.sha256).hexdigest()[:24]


@dataclass
class Filled:
    gw: Running
    ns: str
    redis: aioredis.Redis
    entries: dict[str, str]  # name -> storage key
    decoys: list[str]

    async def unrelated_alive(self) -> int:
        """How many of the 200,000 unrelated keys exist (EXISTS in batches, no scan)."""
        alive = 0
        for start in range(1, UNRELATED + 1, 20_000):
            names = [f"unrelated:{i}" for i in range(start, min(start + 20_000, UNRELATED + 1))]
            alive += await self.redis.exists(*names)
        return alive

    async def remaining(self) -> set[str]:
        """Which of our entries still exist (EXISTS per key: no scan of the 200k)."""
        return {k for k in self.entries.values() if await self.redis.exists(k)}


@pytest.fixture
async def filled(upstream: respx.MockRouter, big_redis: str) -> AsyncIterator[Filled]:
    """Eight entries (2 tenants x 2 models x with/without a prompt template) and look-alikes."""
    for ep in ENDPOINTS:
        ep.mock(upstream)
    ns = f"adm{uuid.uuid4().hex[:8]}"
    settings = make_settings(
        cache_backend="redis",
        redis_url=big_redis,
        cache_namespace=ns,
        gateway_api_keys=CLIENT_KEYS,
        tenant_hash_secret=SECRET,
        admin_api_key=ADMIN_KEY,
    )
    client = aioredis.from_url(big_redis)
    async with running(settings) as gw:
        pipeline, auth = gw.gateway.pipeline, gw.gateway.auth
        entries: dict[str, str] = {}
        for who in ("key-a", "key-b"):
            for model in ("gpt-4o-mini", "gpt-4o"):
                for prompt in (None, "greeting"):
                    call = pipeline.prepare(
                        CHAT_API,
                        {**CHAT, "model": model},
                        model=gw.gateway.models.get(model),
                        tenant=auth.tenant_id(who),
                        controls=DEFAULT_CONTROLS,
                        prompt=prompt,
                    )
                    await pipeline.run(call)
                    entries[f"{who}/{model}/{prompt or '-'}"] = call.skey
        # Keys that look like ours but are not entries of this namespace.
        a_key = entries["key-a/gpt-4o/-"]
        decoys = [
            a_key.replace(ns, f"{ns}x", 1),  # a namespace with ours as a prefix
            a_key.replace(ns, "other", 1),  # another namespace, same layout
            a_key.replace(":e:", ":lease:", 1),  # our namespace, not an entry
            f"{ns}:stats:gpt-4o",
        ]
        await client.mset({k: b"decoy" for k in decoys})
        await client.config_resetstat()
        try:
            yield Filled(gw, ns, client, entries, decoys)
        finally:
            await client.delete(*decoys, *entries.values())
            await client.aclose()


def _names(filled: Filled, *names: str) -> set[str]:
    return {filled.entries[n] for n in names}


_A = [
    "key-a/gpt-4o-mini/-",
    "key-a/gpt-4o-mini/greeting",
    "key-a/gpt-4o/-",
    "key-a/gpt-4o/greeting",
]
_B = [name.replace("key-a", "key-b") for name in _A]
CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("model", {"model": "gpt-4o"}, [n for n in _A + _B if "/gpt-4o/" in n]),
    ("tenant-by-client-key", {"tenant": "key-a"}, _A),
    ("tenant-by-id", {"tenant": _tenant("key-b")}, _B),
    ("prompt", {"prompt": "greeting"}, [n for n in _A + _B if n.endswith("/greeting")]),
    # prompt or not, the same request of the same tenant has the same digest
    ("key", {"key": "key-a/gpt-4o/-"}, ["key-a/gpt-4o/-", "key-a/gpt-4o/greeting"]),
    ("model+tenant+prompt", {"model": "gpt-4o", "tenant": "key-b", "prompt": "greeting"},
     ["key-b/gpt-4o/greeting"]),
    ("everything", {}, _A + _B),
]  # fmt: skip


@pytest.mark.redis
@pytest.mark.parametrize(("case", "filters", "gone"), CASES, ids=[c[0] for c in CASES])
async def test_invalidation_removes_only_matching_entries_among_200k_keys(
    filled: Filled, case: str, filters: dict[str, Any], gone: list[str]
) -> None:
    expected_gone = _names(filled, *gone)
    if "key" in filters:  # named by entry above; the digest exists only now
        filters = {**filters, "key": filled.entries[filters["key"]].rsplit(":", 1)[1]}
    answer = await filled.gw.http.request(
        "DELETE", "/v1/cache", json=filters, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert answer.status_code == 200, answer.text
    # The count proves nothing else went: every expected entry is gone and no more were deleted.
    assert answer.json() == {"deleted": len(expected_gone)}
    assert await filled.remaining() == set(filled.entries.values()) - expected_gone
    assert await filled.redis.exists(*filled.decoys) == len(filled.decoys)
    assert await filled.unrelated_alive() == UNRELATED
    used = set((await filled.redis.info("commandstats")).keys())
    assert {"cmdstat_scan", "cmdstat_unlink"} <= used or not expected_gone
    assert not used & {"cmdstat_keys", "cmdstat_flushdb", "cmdstat_flushall"}


@pytest.mark.redis
async def test_invalidated_entry_is_a_miss_and_the_rest_still_hit(filled: Filled) -> None:
    gw, key_a = filled.gw, {"Authorization": "Bearer key-a"}
    first = await gw.http.post("/v1/chat/completions", json=CHAT, headers=key_a)
    assert first.headers["x-cache"] == "HIT"
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    key = first.headers["x-cache-key"]
    deleted = await gw.http.request("DELETE", "/v1/cache", json={"key": key}, headers=admin)
    again = await gw.http.post("/v1/chat/completions", json=CHAT, headers=key_a)
    other = await gw.http.post(
        "/v1/chat/completions", json={**CHAT, "model": "gpt-4o"}, headers=key_a
    )
    assert deleted.json() == {"deleted": 2}  # with its prompt-template twin
    assert again.headers["x-cache"] == "MISS"
    assert other.headers["x-cache"] == "HIT"


async def test_the_key_of_a_one_input_embeddings_request_deletes_its_entry(
    provider: None,
) -> None:
    body = {"model": "text-embedding-3-small", "input": "delete me"}
    async with running(make_settings()) as gw:
        first = await gw.http.post("/v1/embeddings", json=body)
        listed = await gw.http.post("/v1/embeddings", json={**body, "input": ["delete me"]})
        key = first.headers["x-cache-key"]
        deleted = await gw.http.request("DELETE", "/v1/cache", json={"key": key})
        again = await gw.http.post("/v1/embeddings", json=body)
    assert (first.headers["x-cache"], listed.headers["x-cache"]) == ("MISS", "HIT")
    assert listed.headers["x-cache-key"] == key  # one input, one entry, one key
    assert deleted.json() == {"deleted": 1}
    assert again.headers["x-cache"] == "MISS"


# --- DELETE /v1/cache with no filter: every entry, and nothing else ---------------------

HELD = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "held question"}]}
EVERY_KIND = [
    ("/v1/chat/completions", CHAT),
    ("/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "Once"}),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": ["one", "two"]}),
    (
        "/v1/prompts/summarise/completions",
        {"variables": {"text": "A long story.", "sentences": 1}},
    ),
]


@pytest.fixture
def every_kind(upstream: respx.MockRouter) -> asyncio.Event:
    """A provider for every kind of entry; a chat about the "held question" waits for the
    returned event."""
    release = asyncio.Event()

    async def chat(request: httpx.Request) -> httpx.Response:
        if b"held question" in request.content:
            await release.wait()  # a flight in progress: its lease is live in Redis
            return httpx.Response(200, json=chat_response("held answer"))
        return httpx.Response(200, json=chat_response())

    upstream.post("/chat/completions").mock(side_effect=chat)
    upstream.post("/completions").mock(return_value=httpx.Response(200, json=completion_response()))
    upstream.post("/embeddings").mock(side_effect=EmbeddingsProvider())
    return release


async def _keys(client: aioredis.Redis, pattern: str) -> list[bytes]:
    return [key async for key in client.scan_iter(match=pattern, count=1000)]


@pytest.mark.redis
async def test_delete_without_a_filter_removes_every_entry_and_keeps_counters_and_leases(
    every_kind: asyncio.Event, redis_url: str
) -> None:
    release = every_kind
    ns = f"del{uuid.uuid4().hex[:8]}"
    settings = make_settings(cache_backend="redis", redis_url=redis_url, cache_namespace=ns)
    client = aioredis.from_url(redis_url)
    try:
        async with running(settings) as gw:
            for path, body in EVERY_KIND * 2:  # stored, then hits
                assert (await gw.http.post(path, json=body)).status_code == 200
            held = asyncio.create_task(gw.http.post("/v1/chat/completions", json=HELD))
            for _ in range(500):
                if await _keys(client, f"{ns}:lock:*"):
                    break
                await asyncio.sleep(0.01)
            leases = await _keys(client, f"{ns}:lock:*")
            entries = await _keys(client, f"{ns}:e:*")
            before = stats_doc(await gw.http.get("/v1/cache/stats"))
            deleted = await gw.http.request("DELETE", "/v1/cache")
            after = stats_doc(await gw.http.get("/v1/cache/stats"))
            left = await _keys(client, f"{ns}:e:*")
            leases_after = await _keys(client, f"{ns}:lock:*")
            again = await gw.http.post("/v1/chat/completions", json=CHAT)
            release.set()
            first_held = await held
            second_held = await gw.http.post("/v1/chat/completions", json=HELD)
    finally:
        release.set()
        await client.aclose()
    assert len(entries) == 5 and len(leases) == 1  # chat, completion, 2 inputs, template
    assert deleted.json() == {"deleted": 5}
    assert left == []
    assert leases_after == leases  # the flight still holds its key
    assert after == before  # counters are not entries
    assert again.headers["x-cache"] == "MISS"  # gone from Redis and from the L1
    assert (first_held.headers["x-cache"], second_held.headers["x-cache"]) == ("MISS", "HIT")


async def test_delete_without_a_filter_on_memory_keeps_the_counters(
    every_kind: asyncio.Event,
) -> None:
    async with running(make_settings()) as gw:
        for path, body in EVERY_KIND * 2:
            assert (await gw.http.post(path, json=body)).status_code == 200
        before = stats_doc(await gw.http.get("/v1/cache/stats"))
        deleted = await gw.http.request("DELETE", "/v1/cache", json={})
        after = stats_doc(await gw.http.get("/v1/cache/stats"))
        kept = stored_keys(gw)
        again = await gw.http.post("/v1/embeddings", json=EVERY_KIND[2][1])
    assert deleted.json() == {"deleted": 5} and kept == []
    assert after == before and before["hits"] == 5
    assert again.headers["x-cache"] == "MISS"
