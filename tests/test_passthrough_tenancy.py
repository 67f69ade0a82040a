"""Tenancy of upstream objects through the pass-through (CONTRACT §3), in-process: two client
keys against the fake upstream's real files and batches (`bench/fake_files.py`, reached
through respx), and plain respx routes for what the fake does not serve."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import orjson
import pytest
import redis.asyncio as aioredis
import respx

from bench.fake_upstream import FakeUpstream
from genai_api.settings import Settings
from tests.conftest import Running, make_settings, running

KEYS = "key-a,key-b"
BATCH_LINE = b'{"custom_id": "1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]}}\n'  # noqa: E501


@pytest.fixture
def fake(upstream: respx.MockRouter) -> FakeUpstream:
    """The fake OpenAI upstream behind respx: every upstream call reaches its ASGI app."""
    app = FakeUpstream()
    transport = httpx.ASGITransport(app=app)

    async def relay(request: httpx.Request) -> httpx.Response:
        answer = await transport.handle_async_request(request)
        return httpx.Response(
            answer.status_code, headers=answer.headers, content=await answer.aread()
        )

    upstream.route(url__regex=r"/v1/(files|batches|audio/)").mock(side_effect=relay)
    return app


class Tenants:
    def __init__(self, gw: Running) -> None:
        self.gw = gw
        self.a = self.client("key-a")
        self.b = self.client("key-b")

    def client(self, key: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url="http://gw/v1", api_key=key, http_client=self.gw.http, max_retries=0
        )

    async def status(self, key: str, method: str, path: str, **kw: Any) -> int:
        headers = {"Authorization": f"Bearer {key}"}
        return (await self.gw.http.request(method, path, headers=headers, **kw)).status_code


async def _tenants(settings: Settings) -> AsyncIterator[Tenants]:
    async with running(settings) as gw:
        yield Tenants(gw)


@pytest.fixture
async def two() -> AsyncIterator[Tenants]:
    async for tenants in _tenants(make_settings(gateway_api_keys=KEYS)):
        yield tenants


async def test_a_file_is_its_creators_alone(fake: FakeUpstream, two: Tenants) -> None:
    mine = await two.a.files.create(file=("a.jsonl", io.BytesIO(BATCH_LINE)), purpose="batch")
    theirs = await two.b.files.create(file=("b.jsonl", io.BytesIO(BATCH_LINE)), purpose="batch")
    assert [f.id for f in (await two.a.files.list()).data] == [mine.id]
    assert [f.id for f in (await two.b.files.list()).data] == [theirs.id]
    assert (await two.a.files.content(mine.id)).content == BATCH_LINE
    for method, path in (("GET", f"/v1/files/{mine.id}"), ("GET", f"/v1/files/{mine.id}/content"),
                         ("DELETE", f"/v1/files/{mine.id}")):  # fmt: skip
        assert await two.status("key-b", method, path) == 404
    assert mine.id in fake.objects.files  # B's delete never reached the upstream


async def test_another_tenants_id_is_answered_like_one_that_does_not_exist(
    fake: FakeUpstream, two: Tenants
) -> None:
    mine = await two.a.files.create(file=("a.jsonl", io.BytesIO(BATCH_LINE)), purpose="batch")
    calls = len(fake.calls)
    headers = {"Authorization": "Bearer key-b"}
    taken = await two.gw.http.get(f"/v1/files/{mine.id}", headers=headers)
    never = await two.gw.http.get("/v1/files/file-000000000000000000000000", headers=headers)
    assert taken.status_code == never.status_code == 404
    assert taken.json()["error"].keys() == never.json()["error"].keys()
    assert taken.json()["error"]["message"].replace(mine.id, "X") == never.json()["error"][
        "message"
    ].replace("file-000000000000000000000000", "X")
    assert len(fake.calls) == calls  # neither reached the upstream


async def test_ids_inside_request_bodies_are_checked(
    fake: FakeUpstream, upstream: respx.MockRouter, two: Tenants
) -> None:
    mine = await two.a.files.create(file=("a.jsonl", io.BytesIO(BATCH_LINE)), purpose="batch")
    with pytest.raises(openai.NotFoundError) as refused:
        await two.b.batches.create(
            input_file_id=mine.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert refused.value.body["param"] == "input_file_id"  # type: ignore[index]
    assert not fake.objects.batches
    batch = await two.a.batches.create(
        input_file_id=mine.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch.status == "validating"
    for path in (f"/v1/batches/{batch.id}", f"/v1/batches/{batch.id}/cancel"):
        assert await two.status("key-b", "GET" if "cancel" not in path else "POST", path) == 404
    tools = {"code_interpreter": {"file_ids": [mine.id]}}
    part = {"type": "input_file", "file_id": mine.id}
    bodies = [
        ("/v1/vector_stores", {"name": "x", "file_ids": [mine.id]}),
        ("/v1/assistants", {"model": "m", "tool_resources": tools}),
        ("/v1/fine_tuning/jobs", {"model": "m", "training_file": mine.id}),
        ("/v1/responses", {"model": "m", "input": [{"role": "user", "content": [part]}]}),
        ("/v1/images/edits", {"model": "i", "prompt": "x", "images": [{"file_id": mine.id}]}),
        # A chat message's file part: the model would read A's file for B.
        (
            "/v1/chat/completions",
            {
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "user", "content": "Summarise my file"},
                    {"role": "user", "content": [{"type": "file", "file": {"file_id": mine.id}}]},
                ],
            },
        ),
    ]
    elsewhere = upstream.route(url__regex=r"/v1/(vector|assist|fine|resp|images|chat)")
    for path, body in bodies:
        assert await two.status("key-b", "POST", path, json=body) == 404, path
    assert elsewhere.call_count == 0


async def test_metadata_may_hold_anything(upstream: respx.MockRouter, two: Tenants) -> None:
    route = upstream.post("/vector_stores").mock(
        return_value=httpx.Response(200, json={"id": "vs_1", "object": "vector_store"})
    )
    body = {"name": "x", "metadata": {"file_id": "file-of-someone-else"}}
    assert await two.status("key-b", "POST", "/v1/vector_stores", json=body) == 200
    assert route.call_count == 1


async def test_a_batch_output_file_is_its_owners(fake: FakeUpstream, two: Tenants) -> None:
    mine = await two.a.files.create(file=("a.jsonl", io.BytesIO(BATCH_LINE)), purpose="batch")
    batch = await two.a.batches.create(
        input_file_id=mine.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    done = await two.a.batches.retrieve(batch.id)
    assert done.status == "completed" and done.output_file_id
    output = (await two.a.files.content(done.output_file_id)).content
    assert b"Fake answer" in output
    assert await two.status("key-b", "GET", f"/v1/files/{done.output_file_id}/content") == 404
    assert [b.id for b in (await two.b.batches.list()).data] == []
    assert [b.id for b in (await two.a.batches.list()).data] == [batch.id]


async def test_form_fields_naming_another_tenants_object_are_refused(
    fake: FakeUpstream, upstream: respx.MockRouter, two: Tenants
) -> None:
    mine = await two.a.files.create(file=("a.jsonl", io.BytesIO(BATCH_LINE)), purpose="batch")
    created = upstream.post("/containers").mock(
        return_value=httpx.Response(200, json={"id": "cntr_b1", "object": "container"})
    )
    container = await two.b.containers.create(name="b")
    assert container.id == "cntr_b1" and created.call_count == 1
    files = upstream.post("/containers/cntr_b1/files").mock(
        return_value=httpx.Response(200, json={"id": "cfile_1", "object": "container.file"})
    )
    refused = await two.gw.http.post(
        "/v1/containers/cntr_b1/files",
        headers={"Authorization": "Bearer key-b"},
        files={"file": ("x.txt", b"data")},
        data={"file_id": mine.id},
    )
    assert refused.status_code == 404
    assert refused.json()["error"]["param"] == "file_id"
    assert files.call_count == 0  # no whole request reached the upstream
    own = await two.b.containers.files.create("cntr_b1", file=("x.txt", b"data"))
    assert own.id == "cfile_1"


async def test_routes_outside_the_table_are_refused_while_tenants_are_kept_apart(
    upstream: respx.MockRouter, two: Tenants
) -> None:
    route = upstream.get("/organization/users").mock(return_value=httpx.Response(200, json={}))
    answer = await two.gw.http.get(
        "/v1/organization/users", headers={"Authorization": "Bearer key-a"}
    )
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "route_not_relayed"
    assert route.call_count == 0
    async for one in _tenants(make_settings(gateway_api_keys="key-a")):
        assert await one.status("key-a", "GET", "/v1/organization/users") == 200


async def test_objects_created_in_a_stream_are_recorded_before_they_are_sent_on(
    upstream: respx.MockRouter, two: Tenants
) -> None:
    events = [
        {"type": "response.created", "response": {"id": "resp_s1", "object": "response"}},
        {"type": "response.output_text.delta", "delta": "hi"},
        {"type": "response.completed", "response": {"id": "resp_s1", "status": "completed"}},
    ]
    seen: list[str | None] = []

    async def stream(request: httpx.Request) -> httpx.Response:
        async def body() -> AsyncIterator[bytes]:
            for event in events:
                yield f"event: {event['type']}\ndata: ".encode() + orjson.dumps(event) + b"\n\n"
                owner = await two.gw.gateway.tenancy.owner_of("resp_s1")
                seen.append(owner.tenant if owner else None)

        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    upstream.post("/responses").mock(side_effect=stream)
    retrieve = upstream.get("/responses/resp_s1").mock(
        return_value=httpx.Response(200, json={"id": "resp_s1", "object": "response"})
    )
    answer = await two.gw.http.post(
        "/v1/responses", json={"model": "m", "input": "hi", "stream": True},
        headers={"Authorization": "Bearer key-a"},
    )  # fmt: skip
    assert answer.status_code == 200 and answer.text.count("data: ") == 3
    tenant_a = two.gw.gateway.auth.tenant_id("key-a")
    # POST /v1/responses is the gateway's own (cached) route: it records the id before the
    # client gets the event carrying it (tests/test_responses_tenancy.py), not necessarily
    # before the upstream's next event is read.
    assert seen[-1] in (None, tenant_a)
    assert (await two.gw.gateway.tenancy.owner_of("resp_s1")) == ("" + tenant_a, "response")
    assert await two.status("key-a", "GET", "/v1/responses/resp_s1") == 200
    assert await two.status("key-b", "GET", "/v1/responses/resp_s1") == 404
    body = {"model": "m", "input": "more", "previous_response_id": "resp_s1"}
    assert await two.status("key-b", "POST", "/v1/responses", json=body) == 404
    assert retrieve.call_count == 1


async def test_a_deleted_objects_record_goes_with_it(fake: FakeUpstream, two: Tenants) -> None:
    mine = await two.a.files.create(file=("a.jsonl", io.BytesIO(BATCH_LINE)), purpose="batch")
    assert (await two.a.files.delete(mine.id)).deleted
    assert await two.gw.gateway.tenancy.owner_of(mine.id) is None
    assert await two.status("key-a", "GET", f"/v1/files/{mine.id}") == 404


async def test_an_object_the_gateway_never_saw_created_is_nobodys(
    upstream: respx.MockRouter, two: Tenants
) -> None:
    route = upstream.get("/files/file-made-elsewhere").mock(
        return_value=httpx.Response(200, json={"id": "file-made-elsewhere", "object": "file"})
    )
    for key in ("key-a", "key-b"):
        assert await two.status(key, "GET", "/v1/files/file-made-elsewhere") == 404
    assert route.call_count == 0
    upstream.get("/files").mock(
        return_value=httpx.Response(
            200, json={"object": "list", "data": [{"id": "file-made-elsewhere"}], "has_more": False}
        )
    )
    async for one in _tenants(make_settings(gateway_api_keys="key-a")):
        assert await one.status("key-a", "GET", "/v1/files/file-made-elsewhere") == 200
        assert await one.status("key-a", "GET", "/v1/files") == 200
        # Seen is not created: with one key the tenant reaches it, but it is not recorded.
        assert await one.gw.gateway.tenancy.owner_of("file-made-elsewhere") is None


@pytest.mark.parametrize(
    "settings",
    [{"gateway_api_keys": None}, {"gateway_api_keys": KEYS, "cache_scope": "shared"}],
    ids=["open gateway", "shared scope"],
)
async def test_without_tenants_to_tell_apart_objects_are_shared(
    fake: FakeUpstream, settings: dict[str, Any]
) -> None:
    async for gw in _tenants(make_settings(**settings)):
        mine = await gw.a.files.create(file=("a.jsonl", io.BytesIO(BATCH_LINE)), purpose="batch")
        assert (await gw.b.files.retrieve(mine.id)).id == mine.id
        assert gw.gw.gateway.tenancy.records is None


@pytest.mark.redis
async def test_objects_recorded_with_one_key_stay_theirs_when_a_second_key_comes(
    fake: FakeUpstream, redis_url: str
) -> None:
    namespace = f"t{uuid.uuid4().hex[:12]}"
    shared = {"cache_backend": "redis", "redis_url": redis_url, "cache_namespace": namespace}
    async for one in _tenants(make_settings(gateway_api_keys="key-a", **shared)):
        mine = await one.a.files.create(file=("a.jsonl", io.BytesIO(BATCH_LINE)), purpose="batch")
    async for two in _tenants(make_settings(gateway_api_keys=KEYS, **shared)):
        assert (await two.a.files.retrieve(mine.id)).id == mine.id
        assert await two.status("key-b", "GET", f"/v1/files/{mine.id}") == 404


@pytest.mark.redis
async def test_records_live_in_redis_without_a_ttl_and_survive_a_cache_purge(
    fake: FakeUpstream, redis_url: str
) -> None:
    settings = make_settings(gateway_api_keys=KEYS, cache_backend="redis", redis_url=redis_url)
    async for two in _tenants(settings):
        mine = await two.a.files.create(file=("a.jsonl", io.BytesIO(BATCH_LINE)), purpose="batch")
        purge = await two.gw.http.request(
            "DELETE", "/v1/cache", headers={"Authorization": "Bearer key-a"}
        )
        assert purge.status_code == 200
        assert (await two.a.files.retrieve(mine.id)).id == mine.id
    client = aioredis.Redis.from_url(redis_url)
    try:
        key = f"{settings.cache_namespace}:own:{mine.id}"
        tenant = two.gw.gateway.auth.tenant_id("key-a")
        assert await client.get(key) == f"{tenant} file".encode()
        assert await client.ttl(key) == -1  # no TTL: a volatile-* policy never evicts it
    finally:
        await client.aclose()


@pytest.mark.redis
async def test_a_check_that_cannot_be_made_is_a_503_not_a_pass(
    upstream: respx.MockRouter, redis_url: str
) -> None:
    route = upstream.get("/files/file-1").mock(return_value=httpx.Response(200, json={}))
    dead = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    settings = make_settings(
        gateway_api_keys=KEYS, cache_backend="redis", redis_url=dead, redis_timeout=0.2
    )
    async for two in _tenants(settings):
        answer = await two.gw.http.get(
            "/v1/files/file-1", headers={"Authorization": "Bearer key-a"}
        )
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "tenancy_unavailable"
    assert route.call_count == 0


async def test_a_filtered_list_is_asked_for_with_the_clients_headers(
    upstream: respx.MockRouter, two: Tenants
) -> None:
    """The Assistants API answers only with `OpenAI-Beta: assistants=v2`."""
    assistant = {"id": "asst_a1", "object": "assistant"}
    upstream.post("/assistants").mock(return_value=httpx.Response(200, json=assistant))
    page = {"object": "list", "data": [{"id": "asst_x"}, assistant], "has_more": False}
    listed = upstream.get("/assistants", headers={"OpenAI-Beta": "assistants=v2"}).mock(
        return_value=httpx.Response(200, json=page)
    )
    headers = {"Authorization": "Bearer key-a", "OpenAI-Beta": "assistants=v2"}
    made = await two.gw.http.post("/v1/assistants", json={"model": "m"}, headers=headers)
    mine = await two.gw.http.get("/v1/assistants", headers=headers)
    assert [a["id"] for a in mine.json()["data"]] == [made.json()["id"]]
    assert listed.call_count == 1
