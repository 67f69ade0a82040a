"""Bodies seen before (`genai_api.pipeline.repeats`): a repeat's check and keys are not worked
out again, and nothing that is not a function of its bytes is taken from the first one."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
import orjson
import pytest
import respx

from genai_api.apis.chat import ChatApi
from genai_api.models.table import ModelInfo
from genai_api.pipeline.repeats import ENTRY_BYTES, Repeats, same_model
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


def test_an_equal_model_entry_counts_as_the_same_and_a_changed_one_does_not() -> None:
    model = ModelInfo("gpt-4o-mini")
    assert same_model(model, model)
    # An unknown model's defaults are made anew for each request: equal, not the same.
    assert same_model(model, ModelInfo("gpt-4o-mini"))
    assert not same_model(model, replace(model, tokenizer="cl100k_base"))


def test_the_table_is_bounded_and_starts_over_when_full() -> None:
    one = 60 + ENTRY_BYTES  # what an entry of a 60-byte body counts
    repeats = Repeats(max_bytes=2 * one - 1, max_body_bytes=60)
    first, second, big = b"a" * 60, b"b" * 60, b"c" * 61
    repeats.keep((first, "x"), 1)
    repeats.keep((big, "x"), 2)
    assert repeats.recall((big, "x")) is None  # over the body bound
    assert repeats.recall((first, "x")) == 1
    repeats.keep((second, "x"), 3)  # two entries do not fit: emptied first
    assert repeats.recall((first, "x")) is None
    assert repeats.recall((second, "x")) == 3


async def test_a_repeated_embeddings_batch_is_keyed_once_per_tenant(
    upstream: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    from genai_api.embeddings import runner
    from tests.embeddings_provider import Provider

    upstream.post("/embeddings").mock(side_effect=Provider())
    keyed: list[int] = []
    embedding_keys = runner.embedding_keys

    def counted(*args: Any, **kwargs: Any) -> list[str]:
        keyed.append(len(args[1]))
        return embedding_keys(*args, **kwargs)

    monkeypatch.setattr(runner, "embedding_keys", counted)
    raw = orjson.dumps({"model": "text-embedding-3-small", "input": ["one", "two", "three"]})
    settings = make_settings(gateway_api_keys="key-a,key-b")
    async with running(settings) as gw:
        answers = [
            await gw.http.post(
                "/v1/embeddings", content=raw, headers={**JSON, "authorization": f"Bearer {k}"}
            )
            for k in ("key-a", "key-a", "key-b", "key-a")
        ]
    assert [a.headers["x-cache"] for a in answers] == ["MISS", "HIT", "MISS", "HIT"]
    assert len({a.headers["x-cache-key"] for a in answers}) == 2  # one per tenant
    assert keyed == [3, 3]  # once for each tenant
    assert answers[1].json()["data"] == answers[0].json()["data"]
