"""Hostile and sloppy bodies: each a 4xx in OpenAI's envelope, and the gateway carries on.

For every case: the answer is the envelope, no flight (lock) stays open, nothing is stored,
the provider is not called, and the next normal request is served. The decisions these
tests pin down are written in `genai_api/http/body.py` and `json_limits.py`.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import respx

from genai_api.apis.schema import MAX_MESSAGES, MAX_N
from genai_api.http.json_limits import MAX_ARRAY_ITEMS, MAX_DEPTH
from tests import processes
from tests.conftest import Running, make_settings, running
from tests.endpoints import (
    COMPLETION_ENDPOINTS,
    ENDPOINTS,
    Endpoint,
    assert_envelope,
    each_completion_endpoint,
    each_endpoint,
    flights,
    stored_keys,
)

CHAT_EP = ENDPOINTS[0]
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def routes(upstream: respx.MockRouter) -> dict[str, respx.Route]:
    return {ep.name: ep.mock(upstream) for ep in ENDPOINTS}


async def refused(
    gw: Running, ep: Endpoint, answer: httpx.Response, status: int, route: respx.Route
) -> dict[str, Any]:
    """Assert the refusal left nothing behind (flight, entry, count) and the next is served."""
    error = assert_envelope(answer, status)
    assert flights(gw) == 0
    assert stored_keys(gw) == []
    assert route.call_count == 0
    counted = await gw.gateway.accounting.snapshot()
    assert counted["hits"] + counted["misses"] + counted["bypassed"] + counted["errors"] == 0
    after = await gw.http.post(ep.path, json=ep.body)
    assert after.status_code == 200, after.text
    assert after.headers["x-cache"] == "MISS"
    return error


def _with_raw(ep: Endpoint, name: str, raw: bytes) -> bytes:
    """`ep.body` serialised with `"name": <raw JSON>` appended, for values orjson won't write."""
    return orjson.dumps(ep.body)[:-1] + b',"' + name.encode() + b'":' + raw + b"}"


def _nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


@each_endpoint
async def test_chunked_body_over_the_limit_is_413_while_reading(
    ep: Endpoint, routes: dict[str, respx.Route]
) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(100):
            sent += 1
            yield b" " * 1024

    async with running(make_settings(max_request_bytes=4096)) as gw:
        answer = await gw.http.post(ep.path, content=chunks(), headers=JSON)
        await refused(gw, ep, answer, 413, routes[ep.name])
    assert sent < 10  # refused as the limit passed, not after reading 100 KiB


@each_endpoint
async def test_chunked_body_under_the_limit_is_served(
    ep: Endpoint, routes: dict[str, respx.Route]
) -> None:
    raw = orjson.dumps(ep.body)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(raw), 7):
            yield raw[i : i + 7]

    async with running(make_settings(max_request_bytes=4096)) as gw:
        answer = await gw.http.post(ep.path, content=chunks(), headers=JSON)
    assert answer.status_code == 200, answer.text


@each_endpoint
@pytest.mark.parametrize("levels", [MAX_DEPTH, 300, 5000])  # ours, orjson.dumps', orjson.loads'
async def test_nesting_deeper_than_the_limit_is_400(
    ep: Endpoint, routes: dict[str, respx.Route], levels: int
) -> None:
    # The body is level 1, so `levels` arrays under it nest levels + 1 deep.
    async with running(make_settings()) as gw:
        answer = await gw.http.post(ep.path, content=_with_raw(ep, "x", _nested(levels)))
        error = await refused(gw, ep, answer, 400, routes[ep.name])
    assert error["code"] == "json_too_deep"


@each_endpoint
async def test_nesting_at_the_limit_is_served(ep: Endpoint, routes: dict[str, respx.Route]) -> None:
    async with running(make_settings()) as gw:
        answer = await gw.http.post(ep.path, content=_with_raw(ep, "x", _nested(MAX_DEPTH - 1)))
    assert answer.status_code == 200, answer.text


@each_endpoint
async def test_array_longer_than_the_limit_is_400(
    ep: Endpoint, routes: dict[str, respx.Route]
) -> None:
    async with running(make_settings()) as gw:
        answer = await gw.http.post(ep.path, json={**ep.body, "x": [0] * (MAX_ARRAY_ITEMS + 1)})
        error = await refused(gw, ep, answer, 400, routes[ep.name])
    assert (error["code"], error["param"]) == ("array_too_long", "x")


@each_endpoint
async def test_array_at_the_limit_is_served(ep: Endpoint, routes: dict[str, respx.Route]) -> None:
    async with running(make_settings()) as gw:
        answer = await gw.http.post(ep.path, json={**ep.body, "x": [0] * MAX_ARRAY_ITEMS})
    assert answer.status_code == 200, answer.text


@each_endpoint
@pytest.mark.parametrize("raw", [b'"\xff\xfe"', b'"caf\xe9"', b'"\xed\xa0\x80"'])
async def test_non_utf8_bytes_are_400(
    ep: Endpoint, routes: dict[str, respx.Route], raw: bytes
) -> None:
    async with running(make_settings()) as gw:
        answer = await gw.http.post(ep.path, content=_with_raw(ep, "user", raw))
        error = await refused(gw, ep, answer, 400, routes[ep.name])
    assert error["code"] == "invalid_json"


@each_endpoint
@pytest.mark.parametrize("raw", [rb'"\ud800"', rb'"a\udc00b"', rb'"\ud800\ud800"'])
async def test_lone_surrogates_are_400(
    ep: Endpoint, routes: dict[str, respx.Route], raw: bytes
) -> None:
    # Accepted, such a string would crash later: orjson cannot write it into a key or entry.
    body = orjson.dumps(ep.with_text("§"))
    async with running(make_settings()) as gw:
        answer = await gw.http.post(ep.path, content=body.replace(b'"\xc2\xa7"', raw))
        error = await refused(gw, ep, answer, 400, routes[ep.name])
    assert error["code"] == "invalid_json"


@each_endpoint
@pytest.mark.parametrize("raw", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"9" * 400])
async def test_nan_and_infinity_are_400(
    ep: Endpoint, routes: dict[str, respx.Route], raw: bytes
) -> None:
    async with running(make_settings()) as gw:
        answer = await gw.http.post(ep.path, content=_with_raw(ep, "temperature", raw))
        error = await refused(gw, ep, answer, 400, routes[ep.name])
    assert error["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("ep", "name"),
    [(ep, name) for ep in ENDPOINTS for name in ep.int_params],
    ids=[f"{ep.name}-{name}" for ep in ENDPOINTS for name in ep.int_params],
)
@pytest.mark.parametrize(
    "raw", [b"18446744073709551616", b"-9223372036854775809", b"1" + b"0" * 30]
)
async def test_huge_integers_are_400(
    ep: Endpoint, routes: dict[str, respx.Route], name: str, raw: bytes
) -> None:
    # Beyond 64 bits orjson reads a float, which no integer parameter accepts.
    async with running(make_settings()) as gw:
        answer = await gw.http.post(ep.path, content=_with_raw(ep, name, raw))
        error = await refused(gw, ep, answer, 400, routes[ep.name])
    assert error["param"] == name


@each_endpoint
async def test_duplicate_keys_last_one_wins(ep: Endpoint, routes: dict[str, respx.Route]) -> None:
    model = ep.body["model"]
    raw = b'{"model": "first-model", ' + orjson.dumps(ep.body)[1:]
    assert raw.count(b'"model"') == 2
    async with running(make_settings()) as gw:
        duplicated = await gw.http.post(ep.path, content=raw, headers=JSON)
        plain = await gw.http.post(ep.path, json=ep.body)
    assert duplicated.status_code == 200, duplicated.text
    sent = orjson.loads(routes[ep.name].calls[0].request.content)
    assert sent["model"] == model  # the provider sees what the key was computed from
    assert plain.headers["x-cache"] == "HIT"
    assert plain.headers["x-cache-key"] == duplicated.headers["x-cache-key"]


@each_endpoint
@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/json; charset=utf-16",
        "application/json; charset=iso-8859-1",
    ],
)
async def test_wrong_content_type_is_415(
    ep: Endpoint, routes: dict[str, respx.Route], content_type: str
) -> None:
    async with running(make_settings()) as gw:
        answer = await gw.http.post(
            ep.path, content=orjson.dumps(ep.body), headers={"Content-Type": content_type}
        )
        error = await refused(gw, ep, answer, 415, routes[ep.name])
    assert error["code"] == "unsupported_media_type"


@each_endpoint
@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Cache-TTL", "9" * 5000),
        ("X-Cache-TTL", "1e999"),
        ("X-Cache-TTL", "nan"),
        ("X-Cache-TTL", "-1"),
        ("Cache-Control", "max-age=" + "9" * 5000),
        ("Cache-Control", "max-age=inf"),
    ],
    ids=[
        "ttl-5000-digits",
        "ttl-1e999",
        "ttl-nan",
        "ttl-negative",
        "max-age-5000-digits",
        "max-age-inf",
    ],
)
async def test_absurd_cache_control_headers_are_400(
    ep: Endpoint, routes: dict[str, respx.Route], header: str, value: str
) -> None:
    async with running(make_settings()) as gw:
        answer = await gw.http.post(ep.path, json=ep.body, headers={header: value})
        error = await refused(gw, ep, answer, 400, routes[ep.name])
    assert error["param"] == header


@each_endpoint
@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", '"utf-8"', "utf8"])
async def test_json_with_utf8_charset_is_served(
    ep: Endpoint, routes: dict[str, respx.Route], charset: str
) -> None:
    headers = {"Content-Type": f"application/json; charset={charset}"}
    async with running(make_settings()) as gw:
        answer = await gw.http.post(ep.path, content=orjson.dumps(ep.body), headers=headers)
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("ep", [e for e in COMPLETION_ENDPOINTS if e.n], ids=lambda e: e.name)
@pytest.mark.parametrize("value", [0, MAX_N + 1, 10**9, 2**62, True, 2.0, "2"])
async def test_absurd_n_is_400(ep: Endpoint, routes: dict[str, respx.Route], value: Any) -> None:
    async with running(make_settings()) as gw:
        answer = await gw.http.post(ep.path, json={**ep.body, "n": value})
        error = await refused(gw, ep, answer, 400, routes[ep.name])
    assert error["param"] == "n"


@each_completion_endpoint
@pytest.mark.parametrize("value", [0, -1, 10_000_001, 2**62, 2**63, True, "100"])
async def test_absurd_max_tokens_is_400(
    ep: Endpoint, routes: dict[str, respx.Route], value: Any
) -> None:
    async with running(make_settings()) as gw:
        answer = await gw.http.post(ep.path, json={**ep.body, ep.max_tokens: value})
        error = await refused(gw, ep, answer, 400, routes[ep.name])
    assert error["param"] == ep.max_tokens


async def test_absurd_max_completion_tokens_is_400(routes: dict[str, respx.Route]) -> None:
    async with running(make_settings()) as gw:
        answer = await gw.http.post(
            CHAT_EP.path, json={**CHAT_EP.body, "max_completion_tokens": 2**62}
        )
        error = await refused(gw, CHAT_EP, answer, 400, routes["chat"])
    assert error["param"] == "max_completion_tokens"


def _conversation(turns: int) -> dict[str, Any]:
    roles = ("user", "assistant")
    messages = [{"role": roles[i % 2], "content": f"turn {i}"} for i in range(turns)]
    return {"model": "gpt-4o-mini", "messages": messages}


async def test_ten_thousand_message_conversation_is_served_and_cached(
    routes: dict[str, respx.Route],
) -> None:
    # MAX_MESSAGES is the boundary: long agent transcripts are legitimate; the provider
    # judges the context length, the gateway only bounds the work per request.
    body = _conversation(MAX_MESSAGES)
    async with running(make_settings()) as gw:
        first = await gw.http.post(CHAT_EP.path, json=body)
        second = await gw.http.post(CHAT_EP.path, json=body)
    assert first.status_code == 200, first.text
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")


async def test_one_message_over_the_limit_is_400(routes: dict[str, respx.Route]) -> None:
    async with running(make_settings()) as gw:
        answer = await gw.http.post(CHAT_EP.path, json=_conversation(MAX_MESSAGES + 1))
        error = await refused(gw, CHAT_EP, answer, 400, routes["chat"])
    assert error["param"] == "messages"


@each_endpoint
async def test_megabyte_string_gets_the_providers_4xx_and_is_not_stored(
    ep: Endpoint, upstream: respx.MockRouter
) -> None:
    # Under MAX_REQUEST_BYTES a long prompt is the provider's to judge (its context window
    # depends on the model); its 400 is relayed and, like every error, never stored.
    too_long = {
        "error": {
            "message": "This model's maximum context length is 128000 tokens.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }
    route = ep.mock(upstream, return_value=httpx.Response(400, json=too_long))
    async with running(make_settings()) as gw:
        answer = await gw.http.post(ep.path, json=ep.with_text("a" * 1_048_576))
        error = assert_envelope(answer, 400)
        assert (flights(gw), stored_keys(gw)) == (0, [])
    assert error["code"] == "context_length_exceeded"
    assert route.call_count == 1


@each_endpoint
async def test_megabyte_string_over_the_byte_limit_is_413(
    ep: Endpoint, routes: dict[str, respx.Route]
) -> None:
    async with running(make_settings(max_request_bytes=1_000_000)) as gw:
        answer = await gw.http.post(ep.path, json=ep.with_text("a" * 1_048_576))
        await refused(gw, ep, answer, 413, routes[ep.name])


@each_endpoint
async def test_client_hanging_up_mid_body_leaves_nothing_behind(
    ep: Endpoint, routes: dict[str, respx.Route], caplog: pytest.LogCaptureFixture
) -> None:
    raw = orjson.dumps(ep.body)
    messages = [
        {"type": "http.request", "body": raw[:10], "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": ep.path,
        "raw_path": ep.path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"host", b"gw")],
        "client": ("127.0.0.1", 1),
        "server": ("gw", 80),
    }
    async with running(make_settings()) as gw:
        with caplog.at_level(logging.INFO):
            await gw.app(scope, receive, send)
        assert (flights(gw), stored_keys(gw)) == (0, [])
        after = await gw.http.post(ep.path, json=ep.body)
    assert routes[ep.name].call_count == 1  # only the request after
    assert after.status_code == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    "raw",
    [
        _with_raw(CHAT_EP, "stream", b"true")[:-1] + b',"x":' + _nested(300) + b"}",
        _with_raw(CHAT_EP, "stream", b"true")[:-1] + b',"n":0}',
        _with_raw(CHAT_EP, "stream", b"true")[:-1] + b',"seed":1e400}',
        _with_raw(CHAT_EP, "stream", b"true")[:-1] + b',"u":"\\ud800"}',
    ],
    ids=["too-deep", "n-0", "overflow", "lone-surrogate"],
)
async def test_refused_stream_requests_get_a_json_envelope_not_sse(
    routes: dict[str, respx.Route], raw: bytes
) -> None:
    async with running(make_settings()) as gw:
        answer = await gw.http.post(CHAT_EP.path, content=raw, headers=JSON)
        await refused(gw, CHAT_EP, answer, 400, routes["chat"])
    assert answer.headers["content-type"] == "application/json"


@each_endpoint
@pytest.mark.parametrize(
    "header",
    [(b"authorization", b"Bearer \xff\xfe\x80"), (b"cache-control", b"max-age=\xff")],
    ids=["authorization", "cache-control"],
)
async def test_non_ascii_header_bytes_are_refused_cleanly(
    ep: Endpoint, routes: dict[str, respx.Route], header: tuple[bytes, bytes]
) -> None:
    # Header bytes arrive latin-1 decoded; nothing may choke encoding or hashing them.
    status = 401 if header[0] == b"authorization" else 400
    async with running(make_settings(gateway_api_keys="key-a")) as gw:
        headers = [header] if status == 401 else [header, (b"authorization", b"Bearer key-a")]
        answer = await gw.http.post(ep.path, json=ep.body, headers=headers)
        assert_envelope(answer, status)
        assert (flights(gw), stored_keys(gw)) == (0, [])
    assert routes[ep.name].call_count == 0


async def test_non_ascii_bearer_on_an_open_gateway_is_its_own_tenant(
    routes: dict[str, respx.Route],
) -> None:
    async with running(make_settings()) as gw:
        odd = await gw.http.post(
            CHAT_EP.path, json=CHAT_EP.body, headers=[(b"authorization", b"Bearer \xff\xfe")]
        )
        plain = await gw.http.post(CHAT_EP.path, json=CHAT_EP.body)
    assert (odd.status_code, odd.headers["x-cache"]) == (200, "MISS")
    assert plain.headers["x-cache"] == "MISS"  # anonymous: another tenant


@pytest.mark.redis
@each_endpoint
async def test_refusals_on_redis_leave_no_entry_and_no_lease(
    ep: Endpoint, routes: dict[str, respx.Route], redis_url: str
) -> None:
    settings = make_settings(cache_backend="redis", redis_url=redis_url, max_request_bytes=4096)
    bodies = [
        _with_raw(ep, "x", _nested(300)),
        _with_raw(ep, "x", b'"\xff"'),
        _with_raw(ep, "x", rb'"\ud800"'),
        _with_raw(ep, ep.int_params[0], b"1" + b"0" * 30),
        b"x" * 5000,
    ]
    async with running(settings) as gw:
        answers = [await gw.http.post(ep.path, content=body, headers=JSON) for body in bodies]
        client = gw.gateway.store.client
        left = [k async for k in client.scan_iter(match=f"{settings.cache_namespace}:*")]
    assert [a.status_code for a in answers] == [400, 400, 400, 400, 413]
    assert left == []
    assert routes[ep.name].call_count == 0


def _raw_exchange(port: int, request: bytes, *, read: bool = True) -> bytes:
    """Send raw bytes; return the first bytes of the answer (or hang up at once)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        return sock.recv(65536) if read else b""


@pytest.mark.slow
def test_a_served_worker_survives_every_hostile_input(tmp_path: Path) -> None:
    """Against a real `genai-api serve` (uvicorn, httptools): it answers, never crashes."""
    env = {"PROVIDER": "mock", "CACHE_BACKEND": "memory", "MAX_REQUEST_BYTES": "4096"}
    server = processes.gateway(tmp_path, env)
    port, path = server.port, CHAT_EP.path
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=10, headers=JSON) as client:
            statuses = [
                client.post(path, content=b"x" * 5000).status_code,
                client.post(path, content=_with_raw(CHAT_EP, "x", _nested(300))).status_code,
                client.post(path, content=_with_raw(CHAT_EP, "x", b'"\xff"')).status_code,
                client.post(path, content=_with_raw(CHAT_EP, "x", rb'"\ud800"')).status_code,
                client.post(path, content=_with_raw(CHAT_EP, "x", b"NaN")).status_code,
            ]
        chunk = b"400\r\n" + b" " * 1024 + b"\r\n"
        chunked = _raw_exchange(
            port, (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + chunk * 6
        )
        _raw_exchange(port, (head + "Content-Length: 1000\r\n\r\n").encode() + b'{"mo', read=False)
        after = httpx.post(server.url + path, json=CHAT_EP.body, timeout=10)
    finally:
        server.stop()
    output = server.output()
    assert statuses == [413, 400, 400, 400, 400]
    assert chunked.startswith(b"HTTP/1.1 413 ")
    assert after.status_code == 200
    assert "Traceback" not in output and " ERROR " not in output
