"""Bodies seen before (`genai_api.pipeline.repeats`): a repeat's check and keys are not worked
out again, and nothing that is not a function of its bytes is taken from the first one."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
import orjson
import pytest
import respx

from genai_api.apis import CHAT as CHAT_API
from genai_api.apis.chat import ChatApi
from genai_api.models.table import ModelInfo
from genai_api.pipeline.repeats import Keys, Repeats
from tests.conftest import CHAT, chat_response, make_settings, running

PATH = "/v1/chat/completions"
JSON = {"content-type": "application/json"}


@pytest.fixture
def provider(upstream: respx.MockRouter) -> respx.Route:
    return upstream.post("/chat/completions").mock(
        return_value=httpx.Response(200, json=chat_response())
    )


@pytest.fixture
def worked_out(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many times a chat body was checked and reduced to its key."""
    counts = {"check": 0, "key_body": 0}
    check, key_body = ChatApi.check, ChatApi.key_body

    def counted_check(self: ChatApi, body: dict[str, Any]) -> None:
        counts["check"] += 1
        check(self, body)

    def counted_key_body(self: ChatApi, body: dict[str, Any], encoding: Any) -> dict[str, Any]:
        counts["key_body"] += 1
        return key_body(self, body, encoding)

    monkeypatch.setattr(ChatApi, "check", counted_check)
    monkeypatch.setattr(ChatApi, "key_body", counted_key_body)
    return counts


async def test_a_repeated_body_is_checked_and_keyed_once(
    provider: respx.Route, worked_out: dict[str, int]
) -> None:
    raw = orjson.dumps(CHAT)
    async with running(make_settings()) as gw:
        answers = [await gw.http.post(PATH, content=raw, headers=JSON) for _ in range(3)]
        # The same request in other bytes: worked out again, to the same key.
        spaced = await gw.http.post(PATH, content=orjson.dumps(CHAT) + b" ", headers=JSON)
    assert [a.headers["x-cache"] for a in answers] == ["MISS", "HIT", "HIT"]
    assert {a.headers["x-cache-key"] for a in [*answers, spaced]} == {
        answers[0].headers["x-cache-key"]
    }
    assert spaced.headers["x-cache"] == "HIT"
    assert worked_out == {"check": 2, "key_body": 2}


async def test_a_bad_body_is_refused_every_time_in_its_own_words(
    provider: respx.Route, worked_out: dict[str, int]
) -> None:
    raw = orjson.dumps({**CHAT, "temperature": 5})
    async with running(make_settings()) as gw:
        answers = [await gw.http.post(PATH, content=raw, headers=JSON) for _ in range(2)]
    assert [a.status_code for a in answers] == [400, 400]
    assert answers[0].json() == answers[1].json()
    assert answers[0].json()["error"]["param"] == "temperature"
    assert worked_out["check"] == 2
    assert provider.call_count == 0


async def test_a_repeat_still_obeys_its_own_headers(provider: respx.Route) -> None:
    raw = orjson.dumps(CHAT)
    async with running(make_settings()) as gw:
        first = await gw.http.post(PATH, content=raw, headers=JSON)
        fresh = await gw.http.post(PATH, content=raw, headers={**JSON, "cache-control": "no-cache"})
        again = await gw.http.post(PATH, content=raw, headers=JSON)
    assert [first.headers["x-cache"], again.headers["x-cache"]] == ["MISS", "HIT"]
    assert fresh.headers["x-cache"] != "HIT"  # asked for a fresh answer: got one
    assert provider.call_count == 2


async def test_the_same_bytes_from_another_tenant_are_keyed_for_it(
    provider: respx.Route,
) -> None:
    raw = orjson.dumps(CHAT)
    settings = make_settings(gateway_api_keys="key-a,key-b")
    async with running(settings) as gw:
        a, b = [
            await gw.http.post(PATH, content=raw, headers={**JSON, "authorization": f"Bearer {k}"})
            for k in ("key-a", "key-b")
        ]
    assert (a.headers["x-cache"], b.headers["x-cache"]) == ("MISS", "MISS")
    assert a.headers["x-cache-key"] != b.headers["x-cache-key"]


def _keys(model: ModelInfo) -> Keys:
    return Keys(model=model, key="k", skey="s", cacheable=True, nondeterministic=False)


def test_an_equal_model_entry_is_reused_and_a_changed_one_is_not() -> None:
    repeats = Repeats()
    model = ModelInfo("gpt-4o-mini")
    repeats.remember(b"{}", CHAT_API, "t", None, _keys(model))
    assert repeats.keys(b"{}", CHAT_API, "t", model, None) is not None
    # An unknown model's defaults are made anew for each request: equal, not the same.
    assert repeats.keys(b"{}", CHAT_API, "t", ModelInfo("gpt-4o-mini"), None) is not None
    changed = replace(model, tokenizer="cl100k_base")
    assert repeats.keys(b"{}", CHAT_API, "t", changed, None) is None
    assert repeats.keys(b"{}", CHAT_API, "other", model, None) is None
    assert repeats.keys(b"{}", CHAT_API, "t", model, "a-template") is None


def test_the_table_is_bounded_and_starts_over_when_full() -> None:
    repeats = Repeats(max_bytes=100, max_body_bytes=60)
    model = ModelInfo("m")
    first, second, big = b"a" * 60, b"b" * 60, b"c" * 61
    repeats.remember(first, CHAT_API, "t", None, _keys(model))
    repeats.remember(big, CHAT_API, "t", None, _keys(model))
    assert repeats.keys(big, CHAT_API, "t", model, None) is None  # over the body bound
    assert repeats.keys(first, CHAT_API, "t", model, None) is not None
    repeats.remember(second, CHAT_API, "t", None, _keys(model))  # 120 > 100: emptied first
    assert repeats.keys(first, CHAT_API, "t", model, None) is None
    assert repeats.keys(second, CHAT_API, "t", model, None) is not None
