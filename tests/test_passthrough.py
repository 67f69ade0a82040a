"""The pass-through, in-process against a respx upstream: what is relayed, with which key and
headers, how errors come back, which routes stay the gateway's, limits and metrics."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
import respx

from genai_api.http.limits import LONG_BODY
from genai_api.passthrough.relay import UpstreamCut, claimed_events
from tests.conftest import CHAT, chat_response, make_settings, running
from tests.test_metrics import parse, value

MODERATION = {"id": "modr-1", "model": "omni-moderation-latest", "results": []}


def _headers(request: httpx.Request) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


async def test_a_route_the_gateway_does_not_serve_goes_upstream_with_the_gateways_key(
    upstream: respx.MockRouter,
) -> None:
    route = upstream.post("/moderations").mock(return_value=httpx.Response(200, json=MODERATION))
    settings = make_settings(gateway_api_keys="client-key")
    async with running(settings, api_key="client-key") as gw:
        answer = await gw.client.moderations.create(input="hello")
    assert answer.id == "modr-1"
    sent = route.calls.last.request
    assert _headers(sent)["authorization"] == "Bearer sk-test-upstream"  # never client-key
    assert json.loads(sent.content) == {"input": "hello"}


async def test_only_the_allowed_headers_travel_each_way(upstream: respx.MockRouter) -> None:
    back = {
        "x-request-id": "req_1",
        "x-ratelimit-remaining-requests": "99",
        "openai-processing-ms": "12",
        "content-disposition": 'attachment; filename="a.mp3"',
        "set-cookie": "__cf_bm=secret",
        "openai-organization": "org-gateway",
        "openai-project": "proj_gateway",
        "server": "cloudflare",
        "cf-ray": "abc",
    }
    mp3 = httpx.Response(200, content=b"mp3", headers={**back, "content-type": "audio/mpeg"})
    route = upstream.post("/audio/speech").mock(return_value=mp3)
    sent = {
        "Authorization": "Bearer client-key",
        "Content-Type": "application/json",
        "Accept": "audio/mpeg",
        "OpenAI-Beta": "assistants=v2",
        "Idempotency-Key": "idem-1",
        "X-Client-Request-Id": "mine-1",
        "OpenAI-Organization": "org-other",
        "OpenAI-Project": "proj_other",
        "Cookie": "session=1",
        "X-Forwarded-For": "10.0.0.1",
        "Cache-Control": "no-store",
        "X-Stainless-Retry-Count": "3",
    }
    async with running(make_settings()) as gw:
        request = gw.http.build_request(
            "POST", "/v1/audio/speech", json={"input": "hi"}, headers=sent
        )
        del request.headers["accept-encoding"]
        answer = await gw.http.send(request)
        await gw.http.post(
            "/v1/audio/speech", json={"input": "hi"}, headers={"Accept-Encoding": "gzip"}
        )
    assert _headers(route.calls.last.request)["accept-encoding"] == "gzip"  # the client's own
    got = _headers(route.calls[0].request)
    assert got["authorization"] == "Bearer sk-test-upstream"
    for name in ("content-type", "accept", "openai-beta", "idempotency-key", "x-client-request-id"):
        assert got[name] == sent[next(k for k in sent if k.lower() == name)]
    for name in ("openai-organization", "openai-project", "cookie", "x-forwarded-for"):
        assert name not in got
    assert "cache-control" not in got and got.get("x-stainless-retry-count") != "3"
    assert got["accept-encoding"] == "identity"  # the client did not ask for compression
    assert answer.content == b"mp3"
    for name in ("x-request-id", "x-ratelimit-remaining-requests", "openai-processing-ms",
                 "content-disposition", "content-type"):  # fmt: skip
        assert answer.headers[name] == {**back, "content-type": "audio/mpeg"}[name]
    for name in ("set-cookie", "openai-organization", "openai-project", "cf-ray"):
        assert name not in answer.headers


async def test_upstream_errors_come_back_with_their_status_body_and_retry_after(
    upstream: respx.MockRouter,
) -> None:
    error = {"error": {"message": "Rate limit reached", "type": "requests", "param": None,
                       "code": "rate_limit_exceeded"}}  # fmt: skip
    upstream.get("/files/file-1").mock(
        return_value=httpx.Response(429, json=error, headers={"retry-after": "7"})
    )
    async with running(make_settings()) as gw:
        answer = await gw.http.get("/v1/files/file-1")
    assert answer.status_code == 429
    assert answer.json() == error
    assert answer.headers["retry-after"] == "7"


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [(httpx.ConnectError("refused"), 502, "upstream_unreachable"),
     (httpx.ReadTimeout("slow"), 504, "upstream_timeout")],
)  # fmt: skip
async def test_an_upstream_that_cannot_answer_is_502_or_504_in_openai_shape(
    upstream: respx.MockRouter, failure: Exception, status: int, code: str
) -> None:
    upstream.post("/moderations").mock(side_effect=failure)
    async with running(make_settings()) as gw:
        answer = await gw.http.post("/v1/moderations", json={"input": "x"})
    assert answer.status_code == status
    assert answer.json()["error"]["code"] == code


async def test_routes_the_gateway_serves_keep_priority(upstream: respx.MockRouter) -> None:
    chat = upstream.post("/chat/completions").mock(
        return_value=httpx.Response(200, json=chat_response())
    )
    stored = upstream.get("/chat/completions").mock(
        return_value=httpx.Response(200, json={"object": "list", "data": [], "has_more": False})
    )
    deleted = upstream.delete("/models/ft:gpt-4o-mini:org::x1").mock(
        return_value=httpx.Response(200, json={"id": "ft:gpt-4o-mini:org::x1", "deleted": True})
    )
    async with running(make_settings()) as gw:
        first = await gw.http.post("/v1/chat/completions", json=CHAT)
        second = await gw.http.post("/v1/chat/completions", json=CHAT)
        models = await gw.http.get("/v1/models")
        listed = await gw.http.get("/v1/chat/completions")  # OpenAI's stored completions
        gone = await gw.client.models.delete("ft:gpt-4o-mini:org::x1")
        wrong = await gw.http.get("/v1/completions")
    assert [first.headers["x-cache"], second.headers["x-cache"]] == ["MISS", "HIT"]
    assert chat.call_count == 1
    assert "gpt-4o-mini" in [m["id"] for m in models.json()["data"]]
    assert listed.status_code == 200 and stored.call_count == 1
    assert gone.deleted and deleted.call_count == 1
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"


async def test_the_mock_provider_has_no_upstream_to_relay_to() -> None:
    async with running(make_settings(provider="mock", openai_api_key=None)) as gw:
        answer = await gw.http.get("/v1/files")
    assert answer.status_code == 404
    error = answer.json()["error"]
    assert error["code"] == "unknown_url" and "mock provider" in error["message"]


async def test_a_path_the_upstream_could_read_otherwise_is_refused(
    upstream: respx.MockRouter,
) -> None:
    async with running(make_settings()) as gw:
        for path in ("/v1/files/%2E%2E/organization/users", "/v1/files//file-1", "/v1/files/"):
            answer = await gw.http.get(path)
            assert answer.status_code == 404, path
            assert answer.json()["error"]["code"] == "unknown_url"
    assert not upstream.calls


async def test_the_query_string_and_an_escaped_id_reach_the_upstream_as_sent(
    upstream: respx.MockRouter,
) -> None:
    route = upstream.get(url__regex=r".*/files\?.*").mock(
        return_value=httpx.Response(200, json={"object": "list", "data": [], "has_more": False})
    )
    model = upstream.delete(url__regex=r".*/models/.*").mock(
        return_value=httpx.Response(200, json={"deleted": True})
    )
    async with running(make_settings()) as gw:
        await gw.http.get("/v1/files?purpose=batch&limit=2&after=file-9")
        await gw.http.delete("/v1/models/ft%3Agpt-4o-mini%3Aorg%3A%3Aa%20b")
    assert route.calls.last.request.url.query == b"purpose=batch&limit=2&after=file-9"
    assert model.calls.last.request.url.raw_path == b"/v1/models/ft:gpt-4o-mini:org::a%20b"


async def test_pass_through_bodies_have_the_upload_limit_and_others_keep_theirs(
    upstream: respx.MockRouter,
) -> None:
    upload = upstream.post("/files").mock(
        return_value=httpx.Response(200, json={"id": "file-1", "object": "file"})
    )
    settings = make_settings(max_request_bytes=64 * 1024, max_upload_bytes=1024 * 1024)
    async with running(settings) as gw:
        fits = await gw.client.files.create(file=("a.bin", b"x" * 300_000), purpose="batch")
        too_big = await gw.http.post(
            "/v1/files", files={"file": ("a.bin", b"x" * 1_100_000)}, data={"purpose": "batch"}
        )
        chat = await gw.http.post("/v1/chat/completions", json={**CHAT, "user": "u" * 100_000})
    assert fits.id == "file-1" and upload.call_count == 1
    assert len(upload.calls.last.request.content) > 300_000
    assert too_big.status_code == 413 and upload.call_count == 1
    assert chat.status_code == 413


async def test_relayed_requests_are_counted_under_one_label(upstream: respx.MockRouter) -> None:
    upstream.post("/moderations").mock(return_value=httpx.Response(200, json=MODERATION))
    upstream.get(url__regex=r".*/files/.*").mock(return_value=httpx.Response(404, json={}))
    async with running(make_settings()) as gw:
        await gw.http.post("/v1/moderations", json={"input": "x"})
        for n in range(3):
            await gw.http.get(f"/v1/files/file-{n}")
        samples = parse((await gw.http.get("/metrics")).text)
    relayed = {"endpoint": "passthrough", "model": "other", "cache": "none"}
    assert value(samples, "genai_requests_total", status="200", **relayed) == 1
    assert value(samples, "genai_requests_total", status="404", **relayed) == 3
    endpoints = {dict(labels).get("endpoint") for (_, labels) in samples}
    assert not any(e and "/" in e for e in endpoints)  # never a path as a label


async def test_a_client_key_is_needed_as_on_every_route(upstream: respx.MockRouter) -> None:
    route = upstream.post("/moderations").mock(return_value=httpx.Response(200, json=MODERATION))
    async with running(make_settings(gateway_api_keys="client-key"), api_key="wrong") as gw:
        with pytest.raises(openai.AuthenticationError):
            await gw.client.moderations.create(input="x")
    assert route.call_count == 0


async def test_a_streamed_objects_owner_is_recorded_before_its_event_is_sent_on() -> None:
    events = b'data: {"type": "response.created", "response": {"id": "resp_1"}}\n\n'
    events += b'data: {"type": "response.completed", "response": {"id": "resp_1"}}\n\n'
    upstream = httpx.Response(200, content=events, request=httpx.Request("POST", "http://u/v1"))
    recorded: list[list[str]] = []

    async def record(parsed: list[Any]) -> None:
        recorded.append([event["response"]["id"] for event in parsed])

    chunks = claimed_events(upstream, record)
    first = await chunks.__anext__()
    assert b"resp_1" in first and recorded == [["resp_1", "resp_1"]]


async def _call(app: Any, path: str, body: bytes) -> tuple[dict[str, Any], int]:
    """One POST through the app's ASGI interface with a scope of our own: (scope, status)."""
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"", "server": ("gw", 80),
        "headers": [(b"host", b"gw"), (b"content-type", b"application/octet-stream"),
                    (b"content-length", str(len(body)).encode())],
    }  # fmt: skip
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return scope, sent[0]["status"]


async def test_a_large_pass_through_body_is_marked_for_the_server_protocol(
    upstream: respx.MockRouter,
) -> None:
    """The protocol reads the mark from the scope it gave the app: the same dict."""
    upstream.post("/files").mock(return_value=httpx.Response(200, json={"id": "file-1"}))
    async with running(make_settings(max_request_bytes=64 * 1024)) as gw:
        relayed, relayed_status = await _call(gw.app, "/v1/files", b"x" * 100_000)
        own, own_status = await _call(gw.app, "/v1/chat/completions", b"x" * 100_000)
    assert relayed_status == 200 and relayed.get(LONG_BODY) is True
    assert own_status == 413 and LONG_BODY not in own


class _Cut(httpx.AsyncByteStream):
    """An upstream body that breaks off after its first chunk."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"first part of the file"
        raise httpx.ReadError("connection reset")


async def test_a_download_the_upstream_breaks_off_is_not_ended_as_if_whole(
    upstream: respx.MockRouter,
) -> None:
    upstream.get("/files/file-1/content").mock(return_value=httpx.Response(200, stream=_Cut()))
    async with running(make_settings()) as gw:
        with pytest.raises(UpstreamCut):  # the server then drops the connection
            await gw.http.get("/v1/files/file-1/content")


async def test_a_stream_the_upstream_breaks_off_ends_with_an_error_event() -> None:
    request = httpx.Request("POST", "http://u/v1/responses")
    upstream = httpx.Response(200, stream=_Cut(), request=request)

    async def record(parsed: list[Any]) -> None:
        return None

    chunks = [chunk async for chunk in claimed_events(upstream, record)]
    assert chunks[-1].startswith(b"event: error\ndata: ")
    assert b'"code":"upstream_cut"' in chunks[-1]
