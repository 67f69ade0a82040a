"""The cached chat and completion path through the HTTP API, with the openai SDK as client."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai
import pytest
import respx

from tests.conftest import CHAT, chat_response, completion_response, make_settings, running


def _ok(payload: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json=payload)


async def test_repeat_request_is_a_hit_with_identical_body(upstream: respx.MockRouter) -> None:
    route = upstream.post("/chat/completions").mock(return_value=_ok(chat_response()))
    async with running(make_settings()) as gw:
        first = await gw.client.chat.completions.with_raw_response.create(**CHAT)
        second = await gw.client.chat.completions.with_raw_response.create(**CHAT)
    assert route.call_count == 1
    assert first.headers["x-cache"] == "MISS"
    assert second.headers["x-cache"] == "HIT"
    assert first.http_response.content == second.http_response.content
    assert second.parse().choices[0].message.content == "Hello there!"
    assert first.headers["x-cache-key"] == second.headers["x-cache-key"]
    assert len(second.headers["x-cache-key"]) == 64
    assert "age" not in first.headers
    assert int(second.headers["age"]) >= 0
    assert second.headers["x-cache-saved-tokens"] == "17"
    # gpt-4o-mini: 12 * 0.15/1M + 5 * 0.60/1M
    assert second.headers["x-cache-saved-cost-usd"] == "0.0000048"


async def test_key_order_and_formatting_share_an_entry(upstream: respx.MockRouter) -> None:
    route = upstream.post("/chat/completions").mock(return_value=_ok(chat_response()))
    async with running(make_settings()) as gw:
        a = await gw.http.post("/v1/chat/completions", content=json.dumps(CHAT))
        reordered = {"messages": CHAT["messages"], "model": CHAT["model"], "stream": False}
        b = await gw.http.post("/chat/completions", content=json.dumps(reordered, indent=4))
    assert route.call_count == 1
    assert (a.headers["x-cache"], b.headers["x-cache"]) == ("MISS", "HIT")


async def test_different_parameters_are_different_entries(upstream: respx.MockRouter) -> None:
    route = upstream.post("/chat/completions").mock(return_value=_ok(chat_response()))
    async with running(make_settings()) as gw:
        await gw.client.chat.completions.create(**CHAT)
        await gw.client.chat.completions.create(**CHAT, temperature=0.2)
        await gw.client.chat.completions.create(**CHAT, max_tokens=5)
    assert route.call_count == 3


async def test_upstream_receives_body_without_gateway_cache_field(
    upstream: respx.MockRouter,
) -> None:
    route = upstream.post("/chat/completions").mock(return_value=_ok(chat_response()))
    async with running(make_settings()) as gw:
        await gw.http.post("/v1/chat/completions", json={**CHAT, "cache": {"ttl": 60}})
    sent = json.loads(route.calls.last.request.content)
    assert "cache" not in sent
    assert sent["messages"] == CHAT["messages"]
    assert route.calls.last.request.headers["authorization"] == "Bearer sk-test-upstream"


async def test_legacy_completions_are_cached(upstream: respx.MockRouter) -> None:
    route = upstream.post("/completions").mock(return_value=_ok(completion_response()))
    async with running(make_settings()) as gw:
        body = {"model": "gpt-3.5-turbo-instruct", "prompt": "hello"}
        await gw.client.completions.with_raw_response.create(**body)
        second = await gw.client.completions.with_raw_response.create(**body)
    assert route.call_count == 1
    assert second.headers["x-cache"] == "HIT"
    assert second.parse().choices[0].text == " world"


async def test_fifty_concurrent_identical_requests_make_one_provider_call(
    upstream: respx.MockRouter,
) -> None:
    release, started = asyncio.Event(), asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        started.set()
        await release.wait()
        return _ok(chat_response())

    route = upstream.post("/chat/completions").mock(side_effect=slow)
    async with running(make_settings()) as gw:
        tasks = [
            asyncio.create_task(gw.http.post("/v1/chat/completions", json=CHAT)) for _ in range(50)
        ]
        await asyncio.wait_for(started.wait(), 5)
        await asyncio.sleep(0.05)
        release.set()
        answers = await asyncio.gather(*tasks)
    assert route.call_count == 1
    statuses = sorted(a.headers["x-cache"] for a in answers)
    assert statuses.count("MISS") == 1
    assert statuses.count("COALESCED") == 49
    assert len({a.content for a in answers}) == 1


async def test_provider_error_is_relayed_and_not_stored(upstream: respx.MockRouter) -> None:
    error = {
        "error": {"message": "overloaded", "type": "server_error", "param": None, "code": None}
    }
    route = upstream.post("/chat/completions").mock(
        side_effect=[httpx.Response(500, json=error), _ok(chat_response())]
    )
    async with running(make_settings()) as gw:
        with pytest.raises(openai.InternalServerError) as info:
            await gw.client.chat.completions.create(**CHAT)
        assert info.value.body["message"] == "overloaded"  # type: ignore[index]
        after = await gw.client.chat.completions.with_raw_response.create(**CHAT)
    assert route.call_count == 2
    assert after.headers["x-cache"] == "MISS"


async def test_rate_limit_keeps_retry_after(upstream: respx.MockRouter) -> None:
    error = {
        "error": {
            "message": "slow down",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    upstream.post("/chat/completions").mock(
        return_value=httpx.Response(429, json=error, headers={"Retry-After": "7"})
    )
    async with running(make_settings()) as gw:
        answer = await gw.http.post("/v1/chat/completions", json=CHAT)
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "7"
    assert answer.json() == {
        "error": {
            "message": "slow down",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }


async def test_unreachable_provider_is_502(upstream: respx.MockRouter) -> None:
    upstream.post("/chat/completions").mock(side_effect=httpx.ConnectError("refused"))
    async with running(make_settings()) as gw:
        answer = await gw.http.post("/v1/chat/completions", json=CHAT)
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "upstream_unreachable"


async def test_provider_timeout_is_504_and_not_stored(upstream: respx.MockRouter) -> None:
    route = upstream.post("/chat/completions").mock(
        side_effect=[httpx.ReadTimeout("slow"), _ok(chat_response())]
    )
    async with running(make_settings()) as gw:
        answer = await gw.http.post("/v1/chat/completions", json=CHAT)
        again = await gw.http.post("/v1/chat/completions", json=CHAT)
    assert answer.status_code == 504
    assert set(answer.json()["error"]) == {"message", "type", "param", "code"}
    assert again.headers["x-cache"] == "MISS"
    assert route.call_count == 2


async def test_gateway_timeout_bounds_a_hung_provider(upstream: respx.MockRouter) -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return _ok(chat_response())

    upstream.post("/chat/completions").mock(side_effect=hang)
    async with running(make_settings(upstream_timeout=0.2)) as gw:
        answer = await gw.http.post("/v1/chat/completions", json=CHAT)
    assert answer.status_code == 504


async def test_failed_flight_wakes_every_waiter_with_the_error(upstream: respx.MockRouter) -> None:
    release, started = asyncio.Event(), asyncio.Event()

    async def fail(request: httpx.Request) -> httpx.Response:
        started.set()
        await release.wait()
        return httpx.Response(503, json={"error": {"message": "down"}})

    route = upstream.post("/chat/completions").mock(side_effect=fail)
    async with running(make_settings()) as gw:
        tasks = [
            asyncio.create_task(gw.http.post("/v1/chat/completions", json=CHAT)) for _ in range(10)
        ]
        await asyncio.wait_for(started.wait(), 5)
        await asyncio.sleep(0.02)
        release.set()
        answers = await asyncio.wait_for(asyncio.gather(*tasks), 5)
        assert len(gw.gateway.pipeline.coalescer) == 0
    assert route.call_count == 1
    assert {a.status_code for a in answers} == {503}


async def test_no_cache_skips_lookup_but_stores(upstream: respx.MockRouter) -> None:
    route = upstream.post("/chat/completions").mock(
        side_effect=[_ok(chat_response("one")), _ok(chat_response("two"))]
    )
    async with running(make_settings()) as gw:
        await gw.http.post("/v1/chat/completions", json=CHAT)
        fresh = await gw.http.post(
            "/v1/chat/completions", json=CHAT, headers={"Cache-Control": "no-cache"}
        )
        later = await gw.http.post("/v1/chat/completions", json=CHAT)
    assert route.call_count == 2
    assert fresh.headers["x-cache"] == "MISS"
    assert later.headers["x-cache"] == "HIT"
    assert later.json()["choices"][0]["message"]["content"] == "two"


async def test_no_store_neither_reads_nor_writes(upstream: respx.MockRouter) -> None:
    route = upstream.post("/chat/completions").mock(return_value=_ok(chat_response()))
    async with running(make_settings()) as gw:
        first = await gw.http.post(
            "/v1/chat/completions", json=CHAT, headers={"Cache-Control": "no-store"}
        )
        second = await gw.http.post("/v1/chat/completions", json=CHAT)
    assert first.headers["x-cache"] == "BYPASS"
    assert second.headers["x-cache"] == "MISS"
    assert route.call_count == 2


@pytest.mark.parametrize(
    ("lines", "status", "calls"),
    [
        ([("Cache-Control", "max-age=100"), ("Cache-Control", "no-store")], "BYPASS", 2),
        ([("Cache-Control", "private"), ("Cache-Control", "no-cache")], "MISS", 2),
        ([("X-Cache-TTL", "5"), ("X-Cache-TTL", "5")], "HIT", 1),
    ],
    ids=["max-age-then-no-store", "private-then-no-cache", "same-ttl-twice"],
)
async def test_repeated_control_header_lines_count_as_one_list(
    upstream: respx.MockRouter, lines: list[tuple[str, str]], status: str, calls: int
) -> None:
    route = upstream.post("/chat/completions").mock(return_value=_ok(chat_response()))
    async with running(make_settings()) as gw:
        await gw.http.post("/v1/chat/completions", json=CHAT)
        answer = await gw.http.post("/v1/chat/completions", json=CHAT, headers=lines)
    assert answer.headers["x-cache"] == status
    assert route.call_count == calls


async def test_repeated_ttl_lines_that_disagree_are_a_400(upstream: respx.MockRouter) -> None:
    route = upstream.post("/chat/completions").mock(return_value=_ok(chat_response()))
    lines = [("X-Cache-TTL", "5"), ("X-Cache-TTL", "abc")]
    async with running(make_settings()) as gw:
        answer = await gw.http.post("/v1/chat/completions", json=CHAT, headers=lines)
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "X-Cache-TTL"
    assert route.call_count == 0


async def test_body_cache_object_is_an_alias(upstream: respx.MockRouter) -> None:
    route = upstream.post("/chat/completions").mock(return_value=_ok(chat_response()))
    async with running(make_settings()) as gw:
        first = await gw.http.post(
            "/v1/chat/completions", json={**CHAT, "cache": {"no-store": True}}
        )
        await gw.http.post("/v1/chat/completions", json=CHAT)
        fresh = await gw.http.post(
            "/v1/chat/completions", json={**CHAT, "cache": {"no-cache": True}}
        )
    assert first.headers["x-cache"] == "BYPASS"
    assert fresh.headers["x-cache"] == "MISS"
    assert route.call_count == 3


async def test_max_age_treats_older_entries_as_misses(upstream: respx.MockRouter) -> None:
    route = upstream.post("/chat/completions").mock(return_value=_ok(chat_response()))
    async with running(make_settings()) as gw:
        await gw.http.post("/v1/chat/completions", json=CHAT)
        store = gw.gateway.store
        skey = next(iter(store._cache._cache))
        raw = json.loads(await store.get(skey))
        raw["stored_at"] -= 100
        await store.set(skey, json.dumps(raw).encode(), 60)
        fresh_enough = await gw.http.post(
            "/v1/chat/completions", json=CHAT, headers={"Cache-Control": "max-age=1000"}
        )
        too_old = await gw.http.post(
            "/v1/chat/completions", json=CHAT, headers={"Cache-Control": "max-age=10"}
        )
    assert fresh_enough.headers["x-cache"] == "HIT"
    assert int(fresh_enough.headers["age"]) >= 100
    assert too_old.headers["x-cache"] == "MISS"
    assert route.call_count == 2


async def test_nondeterministic_requests_bypass_when_configured(
    upstream: respx.MockRouter,
) -> None:
    route = upstream.post("/chat/completions").mock(return_value=_ok(chat_response()))
    async with running(make_settings(cache_nondeterministic=False)) as gw:
        hot = {**CHAT, "temperature": 0.7}
        a = await gw.http.post("/v1/chat/completions", json=hot)
        b = await gw.http.post("/v1/chat/completions", json=hot)
        seeded = {**hot, "seed": 42}
        c = await gw.http.post("/v1/chat/completions", json=seeded)
        d = await gw.http.post("/v1/chat/completions", json=seeded)
        cold = {**CHAT, "temperature": 0}
        e = await gw.http.post("/v1/chat/completions", json=cold)
        f = await gw.http.post("/v1/chat/completions", json=cold)
    assert [r.headers["x-cache"] for r in (a, b, c, d, e, f)] == [
        "BYPASS",
        "BYPASS",
        "MISS",
        "HIT",
        "MISS",
        "HIT",
    ]
    assert route.call_count == 4


async def test_nondeterministic_requests_are_cached_by_default(
    upstream: respx.MockRouter,
) -> None:
    upstream.post("/chat/completions").mock(return_value=_ok(chat_response()))
    async with running(make_settings()) as gw:
        await gw.http.post("/v1/chat/completions", json={**CHAT, "temperature": 0.9})
        again = await gw.http.post("/v1/chat/completions", json={**CHAT, "temperature": 0.9})
    assert again.headers["x-cache"] == "HIT"


async def test_n_greater_than_one_is_one_entry_with_all_choices(
    upstream: respx.MockRouter,
) -> None:
    route = upstream.post("/chat/completions").mock(return_value=_ok(chat_response(n=3)))
    async with running(make_settings()) as gw:
        await gw.client.chat.completions.create(**CHAT, n=3)
        hit = await gw.client.chat.completions.with_raw_response.create(**CHAT, n=3)
    assert route.call_count == 1
    assert len(hit.parse().choices) == 3


async def test_tenants_never_share_entries(upstream: respx.MockRouter) -> None:
    route = upstream.post("/chat/completions").mock(return_value=_ok(chat_response()))
    settings = make_settings(gateway_api_keys="key-a,key-b")
    async with running(settings) as gw:
        a1 = await gw.http.post(
            "/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer key-a"}
        )
        b1 = await gw.http.post(
            "/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer key-b"}
        )
        a2 = await gw.http.post(
            "/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer key-a"}
        )
        stored = list(gw.gateway.store._cache._cache)
    assert [r.headers["x-cache"] for r in (a1, b1, a2)] == ["MISS", "MISS", "HIT"]
    assert a1.headers["x-cache-key"] != b1.headers["x-cache-key"]
    assert route.call_count == 2
    assert not any("key-a" in k or "key-b" in k for k in stored)


async def test_shared_scope_serves_every_client(upstream: respx.MockRouter) -> None:
    upstream.post("/chat/completions").mock(return_value=_ok(chat_response()))
    settings = make_settings(gateway_api_keys="key-a,key-b", cache_scope="shared")
    async with running(settings) as gw:
        await gw.http.post(
            "/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer key-a"}
        )
        b = await gw.http.post(
            "/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer key-b"}
        )
    assert b.headers["x-cache"] == "HIT"


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic a2V5LWE=", "Bearer "])
async def test_missing_or_wrong_client_key_is_401(
    upstream: respx.MockRouter, header: str | None
) -> None:
    route = upstream.post("/chat/completions").mock(return_value=_ok(chat_response()))
    async with running(make_settings(gateway_api_keys="key-a")) as gw:
        headers = {"Authorization": header} if header is not None else {}
        answer = await gw.http.post("/v1/chat/completions", json=CHAT, headers=headers)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "invalid_api_key"
    assert route.call_count == 0
