"""The Responses API under the tenancy rule (CONTRACT §3, §8), two client keys: a response
id served to one tenant, from the cache or not, is that tenant's; another tenant naming it
(`previous_response_id`, GET, DELETE, input items) gets 404 and never reaches upstream.

The provider and the pass-through both reach the fake upstream's Responses API (it stores
responses and serves them back) through respx."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
import respx

from bench.fake_upstream import FakeUpstream
from tests.conftest import Running, make_settings, running
from tests.responses_client import REQUEST, HeldEvents, events_of
from tests.streaming_client import streaming

KEYS = "key-a,key-b"


@pytest.fixture
def fake(upstream: respx.MockRouter) -> FakeUpstream:
    """The fake upstream behind respx: its Responses API answers, stores and serves back."""
    app = FakeUpstream()
    transport = httpx.ASGITransport(app=app)

    async def relay(request: httpx.Request) -> httpx.Response:
        answer = await transport.handle_async_request(request)
        return httpx.Response(
            answer.status_code, headers=answer.headers, content=await answer.aread()
        )

    upstream.route(url__regex=r"/v1/responses").mock(side_effect=relay)
    return app


def client(gw: Running, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url="http://gw/v1", api_key=key, http_client=gw.http, max_retries=0
    )


@pytest.fixture
async def gw() -> AsyncIterator[Running]:
    async with running(make_settings(gateway_api_keys=KEYS)) as started:
        yield started


def calls(fake: FakeUpstream) -> int:
    return sum(fake.calls.values())


async def test_another_tenant_cannot_continue_my_response(fake: FakeUpstream, gw: Running) -> None:
    a, b = client(gw, "key-a"), client(gw, "key-b")
    mine = await a.responses.create(**REQUEST)
    before = calls(fake)
    for stream in (False, True):
        with pytest.raises(openai.NotFoundError) as refused:
            await b.responses.create(**REQUEST, previous_response_id=mine.id, stream=stream)
        assert refused.value.body["param"] == "previous_response_id"  # type: ignore[index]
        assert refused.value.body["code"] == "object_not_found"  # type: ignore[index]
    assert calls(fake) == before  # neither reached the upstream
    follow_up = await a.responses.create(**REQUEST, previous_response_id=mine.id)
    assert follow_up.previous_response_id == mine.id
    assert calls(fake) == before + 1


async def test_a_served_response_is_read_and_deleted_by_its_tenant_only(
    fake: FakeUpstream, gw: Running
) -> None:
    a, b = client(gw, "key-a"), client(gw, "key-b")
    mine = await a.responses.create(**REQUEST)
    before = calls(fake)
    for call in (
        b.responses.retrieve(mine.id),
        b.responses.input_items.list(mine.id),
        b.responses.delete(mine.id),
    ):
        with pytest.raises(openai.NotFoundError):
            await call
    assert calls(fake) == before
    assert (await a.responses.retrieve(mine.id)).id == mine.id
    items = await a.responses.input_items.list(mine.id)
    assert [i.type for i in items.data] == ["message"]
    await a.responses.delete(mine.id)
    assert await gw.gateway.tenancy.owner_of(mine.id) is None  # its record went with it
    with pytest.raises(openai.NotFoundError):
        await a.responses.retrieve(mine.id)


async def test_an_id_served_from_the_cache_stays_its_tenants(
    fake: FakeUpstream, gw: Running
) -> None:
    a, b = client(gw, "key-a"), client(gw, "key-b")
    first = await a.responses.with_raw_response.create(**REQUEST)
    hit = await a.responses.with_raw_response.create(**REQUEST)
    theirs = await b.responses.with_raw_response.create(**REQUEST)  # an entry of B's own
    assert [r.headers["x-cache"] for r in (first, hit, theirs)] == ["MISS", "HIT", "MISS"]
    mine = hit.parse().id
    assert (await a.responses.retrieve(mine)).id == mine
    with pytest.raises(openai.NotFoundError):
        await b.responses.retrieve(mine)
    # The fake upstream answers the same body with the same id: B's answer is A's id, and
    # the first tenant to be served an id keeps it.
    assert theirs.parse().id == mine


async def test_a_streamed_miss_records_its_id_before_the_client_gets_it(
    upstream: respx.MockRouter,
) -> None:
    events = events_of(REQUEST)
    held = HeldEvents()
    upstream.post("/responses").mock(side_effect=held)
    async with streaming(make_settings(gateway_api_keys=KEYS), api_key="key-a") as gw:
        held.send(events[0])
        raw = await gw.client.responses.with_raw_response.create(**REQUEST, stream=True)
        stream = raw.parse().__aiter__()
        created = await asyncio.wait_for(stream.__anext__(), 5)
        owner = await gw.gateway.tenancy.owner_of(created.response.id)
        assert not held.closed.is_set()  # the provider is still streaming
        held.send(*events[1:])
        held.end()
        rest = [e async for e in stream]
    assert owner is not None and owner.kind == "response"
    assert owner.tenant == gw.gateway.auth.tenant_id("key-a")
    assert rest[-1].type == "response.completed"


@pytest.mark.parametrize(
    ("named", "param"),
    [
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-x"}]}]},
            "input.content.file_id",
        ),
        (
            {"tools": [{"type": "file_search", "vector_store_ids": ["vs_x"]}]},
            "tools.vector_store_ids",
        ),
        ({"conversation": "conv_x"}, "conversation"),
        ({"conversation": {"id": "conv_x"}}, "conversation.id"),
    ],
    ids=["input-file", "vector-store", "conversation-id", "conversation-object"],
)
async def test_objects_a_request_names_must_be_the_callers(
    upstream: respx.MockRouter, gw: Running, named: dict[str, Any], param: str
) -> None:
    route = upstream.post("/responses").mock(return_value=httpx.Response(500))
    answer = await gw.http.post(
        "/v1/responses", json={**REQUEST, **named}, headers={"Authorization": "Bearer key-b"}
    )
    assert answer.status_code == 404, answer.text
    assert answer.json()["error"]["param"] == param
    assert route.call_count == 0


async def test_with_one_key_nothing_is_refused(fake: FakeUpstream) -> None:
    async with running(make_settings(gateway_api_keys="key-a"), api_key="key-a") as gw:
        with pytest.raises(openai.NotFoundError) as unknown:
            await gw.client.responses.create(**REQUEST, previous_response_id="resp_elsewhere")
        mine = await gw.client.responses.create(**REQUEST)
        owner = await gw.gateway.tenancy.owner_of(mine.id)
    assert "Previous response" in unknown.value.message  # the upstream's own answer
    assert owner is not None  # recorded all the same, for when a second key is added
