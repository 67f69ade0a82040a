"""Several answers per key for sampled requests, and regenerates (`genai_api.pipeline.variants`).

A chat UI's regenerate resends the identical request; the person pressing it must get a
new answer, while everyone else's repeats stay hits. The provider here answers "answer N"
for its N-th call, so which call an answer came from is visible.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
import respx

from genai_api.settings import Settings
from tests.conftest import CHAT, chat_response, make_settings, running
from tests.streaming_client import sse, streaming

SAMPLED = {**CHAT, "temperature": 0.8}  # no seed: each call may answer differently


class Numbered:
    """A provider whose N-th answer says "answer N" (whole, or streamed in two chunks)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        text = f"answer {self.calls}"
        if not orjson.loads(request.content).get("stream"):
            return httpx.Response(200, json=chat_response(text))
        meta = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
        chunks = [
            {**meta, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]},
            {**meta, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {**meta, "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2}},
        ]
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=sse(*chunks)
        )


@pytest.fixture
def provider(upstream: respx.MockRouter) -> Numbered:
    numbered = Numbered()
    upstream.post("/chat/completions").mock(side_effect=numbered)
    return numbered


def regenerating(**overrides: Any) -> Settings:
    return make_settings(**{"cache_regenerate_seconds": 120, "cache_variants": 3, **overrides})


async def ask(gw: Any, body: dict[str, Any] = SAMPLED, key: str = "key-a") -> httpx.Response:
    answer = await gw.http.post(
        "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    assert answer.status_code == 200, answer.text
    return answer  # type: ignore[no-any-return]


def text(answer: httpx.Response) -> str:
    return str(answer.json()["choices"][0]["message"]["content"])


def seen(answers: list[httpx.Response]) -> list[tuple[str, str]]:
    return [(a.headers["x-cache"], text(a)) for a in answers]


async def test_a_regenerate_gets_a_new_answer_until_the_bucket_is_full(provider: Numbered) -> None:
    async with running(regenerating(cache_scope="shared")) as gw:
        answers = [await ask(gw) for _ in range(5)]
        other = [await ask(gw, key="key-b") for _ in range(6)]
    assert seen(answers) == [
        ("MISS", "answer 1"),
        ("MISS", "answer 2"),  # stored beside the first
        ("MISS", "answer 3"),  # the third: the bucket is full
        ("MISS", "answer 4"),  # seen all three: a fresh one, served and not kept
        ("MISS", "answer 5"),
    ]
    # Another requester's repeats are hits; its own regenerates walk the stored answers.
    assert [a.headers["x-cache"] for a in other] == ["HIT", "HIT", "HIT", "MISS", "MISS", "MISS"]
    assert sorted(text(a) for a in other[:3]) == ["answer 1", "answer 2", "answer 3"]
    assert provider.calls == 8


async def test_a_plain_hit_picks_among_the_stored_answers(provider: Numbered) -> None:
    async with running(regenerating(cache_scope="shared")) as gw:
        for _ in range(3):
            await ask(gw)  # answers 1, 2, 3 stored by key-a's regenerates
        picked = {text(await ask(gw, key=f"reader-{i}")) for i in range(40)}
    assert picked == {"answer 1", "answer 2", "answer 3"}  # (1 - 1/3)^40 that one is missed
    assert provider.calls == 3


async def test_the_user_field_tells_requesters_apart_on_one_key(provider: Numbered) -> None:
    async with running(regenerating()) as gw:
        alice = await ask(gw, {**SAMPLED, "user": "alice"})
        bob = await ask(gw, {**SAMPLED, "user": "bob"})
        alice_again = await ask(gw, {**SAMPLED, "user": "alice"})
    assert seen([alice, bob, alice_again]) == [
        ("MISS", "answer 1"),
        ("HIT", "answer 1"),
        ("MISS", "answer 2"),
    ]


@pytest.mark.parametrize("body", [{**CHAT, "temperature": 0}, {**SAMPLED, "seed": 7}])
async def test_deterministic_requests_keep_one_answer(
    provider: Numbered, body: dict[str, Any]
) -> None:
    async with running(regenerating()) as gw:
        answers = [await ask(gw, body) for _ in range(3)]
    assert seen(answers) == [("MISS", "answer 1"), ("HIT", "answer 1"), ("HIT", "answer 1")]


async def test_a_repeat_after_the_window_is_a_plain_hit(provider: Numbered) -> None:
    async with running(regenerating(cache_regenerate_seconds=0.3)) as gw:
        first = await ask(gw)
        await asyncio.sleep(0.4)
        later = await ask(gw)
    assert seen([first, later]) == [("MISS", "answer 1"), ("HIT", "answer 1")]


@pytest.mark.parametrize(
    "overrides", [{"cache_variants": 1}, {"cache_regenerate_seconds": 0}], ids=["one", "no-window"]
)
async def test_one_variant_or_no_window_is_todays_behaviour(
    provider: Numbered, overrides: dict[str, Any]
) -> None:
    async with running(make_settings(**overrides)) as gw:
        answers = [await ask(gw) for _ in range(3)]
    assert seen(answers) == [("MISS", "answer 1"), ("HIT", "answer 1"), ("HIT", "answer 1")]


async def test_savings_count_only_answers_served_without_a_call(provider: Numbered) -> None:
    async with running(regenerating(cache_scope="shared")) as gw:
        await ask(gw)
        await ask(gw)  # a regenerate: a provider call
        await ask(gw, key="key-b")  # a hit
        stats = (await gw.http.get("/v1/cache/stats")).json()
    assert (stats["misses"], stats["hits"]) == (2, 1)
    assert stats["tokens_saved"]["total"] == 17  # the one hit's usage


async def test_a_streamed_regenerate_streams_a_new_answer_through_the_sdk(
    provider: Numbered,
) -> None:
    async with streaming(regenerating()) as gw:

        async def streamed() -> tuple[str, str]:
            raw = await gw.client.chat.completions.with_raw_response.create(**SAMPLED, stream=True)
            parts = [c.choices[0].delta.content or "" async for c in raw.parse() if c.choices]
            return raw.headers["x-cache"], "".join(parts)

        first = await streamed()
        again = await streamed()
        whole = await gw.client.chat.completions.with_raw_response.create(**SAMPLED)
    assert (first, again) == (("MISS", "answer 1"), ("MISS", "answer 2"))
    # The same requester's third ask: a fresh answer again (it has seen both stored ones).
    assert (whole.headers["x-cache"], whole.parse().choices[0].message.content) == (
        "MISS",
        "answer 3",
    )


async def recorded(url: str, namespace: str) -> None:
    """Until a requester's record of the answers served to it is in Redis (at most 5 s)."""
    client = aioredis.from_url(url)
    try:
        for _ in range(100):
            if [k async for k in client.scan_iter(match=f"{namespace}:seen:*")]:
                return
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()
    raise AssertionError("the record of what was served never reached Redis")


@pytest.mark.redis
async def test_a_regenerate_is_recognised_on_another_replica(
    provider: Numbered, redis_url: str
) -> None:
    settings = regenerating(cache_backend="redis", redis_url=redis_url)
    async with running(settings) as one, running(settings) as two:
        first = await ask(one)
        await recorded(redis_url, settings.cache_namespace)  # written in the background
        again = await ask(two)
        other = await ask(two, key="key-b")
    assert seen([first, again]) == [("MISS", "answer 1"), ("MISS", "answer 2")]
    assert other.headers["x-cache"] == "MISS"  # tenant scope: key-b has entries of its own


@pytest.mark.parametrize("make", [regenerating], ids=["memory"])
async def test_concurrent_regenerates_share_one_fresh_call(
    provider: Numbered, make: Callable[..., Settings]
) -> None:
    async with running(make(cache_scope="shared")) as gw:
        await ask(gw)
        await ask(gw, key="key-b")  # key-b has seen answer 1 (the only one)
        both = await asyncio.gather(ask(gw), ask(gw, key="key-b"))
    assert [text(a) for a in both] == ["answer 2", "answer 2"]
    assert provider.calls == 2


async def test_anonymous_requests_without_a_user_are_never_regenerates(
    provider: Numbered,
) -> None:
    # Nobody can be told apart: each anonymous client's repeat would be another's regenerate.
    async with running(regenerating()) as gw:
        answers = [await gw.http.post("/v1/chat/completions", json=SAMPLED) for _ in range(2)]
        named = [
            await gw.http.post("/v1/chat/completions", json={**SAMPLED, "user": "u1"})
            for _ in range(2)
        ]
    assert seen(answers) == [("MISS", "answer 1"), ("HIT", "answer 1")]
    assert seen(named) == [("HIT", "answer 1"), ("MISS", "answer 2")]
