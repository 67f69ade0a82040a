"""The SDK's aiohttp client as the gateway runs it, against a real HTTP server on a free port.

Every behaviour is checked for `GatewayAioHttpClient` and for the SDK's own
`DefaultAioHttpClient` it trims, so the two cannot drift apart: JSON answers, compressed
answers, redirects, cookies, status errors, timeouts, streams and a refused connection.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import orjson
import pytest
import uvicorn

from genai_api.errors import ProviderError, ProviderTimeout, ProviderUnreachable
from genai_api.providers.aiohttp_client import GatewayAioHttpClient
from genai_api.providers.openai import OpenAIProvider
from tests.conftest import chat_response
from tests.redis_server import free_port

CLIENTS = {"gateway": GatewayAioHttpClient, "sdk-default": openai.DefaultAioHttpClient}
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
ANSWER = orjson.dumps(chat_response("Hello from the wire"))
LARGE = orjson.dumps(chat_response("many chunks " * 8000))  # ~100 KB: several TCP reads


@dataclass
class Upstream:
    url: str
    seen: list[dict[str, str]] = field(default_factory=list)  # headers of each request


async def _app(upstream: Upstream, scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    upstream.seen.append({k.decode(): v.decode() for k, v in scope["headers"]})
    path = scope["path"]
    headers = [(b"content-type", b"application/json")]
    status, payload = 200, ANSWER
    if path == "/v1/chat/completions" and len(upstream.seen) == 1:
        headers.append((b"set-cookie", b"affinity=node-7; Path=/"))
    elif path == "/v1/moved/chat/completions":
        status, payload = 307, b""
        headers = [(b"location", (upstream.url + "/chat/completions").encode())]
    elif path == "/v1/gzip/chat/completions":
        payload = gzip.compress(ANSWER)
        headers.append((b"content-encoding", b"gzip"))
    elif path == "/v1/deflate/chat/completions":
        payload = zlib.compress(ANSWER)
        headers.append((b"content-encoding", b"deflate"))
    elif path == "/v1/large/chat/completions":
        payload = LARGE
    elif path == "/v1/limited/chat/completions":
        status = 429
        payload = orjson.dumps({"error": {"message": "slow down", "type": "rate_limit"}})
        headers.append((b"retry-after", b"7"))
    elif path == "/v1/slow/chat/completions":
        await asyncio.sleep(1)  # past the client's 0.3 s; the fixture's shutdown waits it out
    elif path == "/v1/stream/chat/completions":
        start = {"type": "http.response.start", "status": 200}
        await send({**start, "headers": [(b"content-type", b"text/event-stream")]})
        for chunk in (b'data: {"choices": [], "n": 1}\n\n', b"data: [DONE]\n\n"):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    headers.append((b"content-length", str(len(payload)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    port = free_port()
    live = Upstream(f"http://127.0.0.1:{port}/v1")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await _app(live, scope, receive, send)

    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.01)
    try:
        yield live
    finally:
        server.should_exit = True
        await task


def provider(kind: str, base_url: str, timeout: float = 10.0) -> OpenAIProvider:
    return OpenAIProvider(
        api_key="sk-wire",
        base_url=base_url,
        timeout=timeout,
        max_retries=0,
        http_client=CLIENTS[kind](),
    )


@pytest.mark.parametrize("kind", CLIENTS)
async def test_answers_and_keeps_the_cookies_the_upstream_sets(
    kind: str, upstream: Upstream
) -> None:
    p = provider(kind, upstream.url)
    try:
        first = await p.create("/chat/completions", BODY)
        second = await p.create("/chat/completions", BODY)
    finally:
        await p.aclose()
    assert first == second == orjson.loads(ANSWER)
    sent = upstream.seen
    assert sent[0]["authorization"] == "Bearer sk-wire"
    assert sent[0]["content-type"] == "application/json"
    assert "cookie" not in sent[0]
    assert sent[1]["cookie"] == "affinity=node-7"


@pytest.mark.parametrize("kind", CLIENTS)
async def test_sends_the_same_headers_as_the_sdk_default(kind: str, upstream: Upstream) -> None:
    p = provider(kind, upstream.url)
    try:
        await p.create("/chat/completions", BODY)
    finally:
        await p.aclose()
    headers = upstream.seen[0]
    assert headers["accept"] == "application/json"
    assert headers["user-agent"].startswith("AsyncOpenAI/Python")
    assert headers["x-stainless-retry-count"] == "0"
    assert headers["accept-encoding"].startswith("gzip")  # the httpx client's default
    assert headers["content-length"] == str(len(orjson.dumps(BODY)))


@pytest.mark.parametrize("kind", CLIENTS)
async def test_follows_a_redirect(kind: str, upstream: Upstream) -> None:
    p = provider(kind, upstream.url + "/moved")
    try:
        answer = await p.create("/chat/completions", BODY)
    finally:
        await p.aclose()
    assert answer == orjson.loads(ANSWER)
    assert len(upstream.seen) == 2


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize("kind", CLIENTS)
async def test_decodes_a_compressed_answer(kind: str, encoding: str, upstream: Upstream) -> None:
    p = provider(kind, upstream.url + "/" + encoding)
    try:
        answer = await p.create("/chat/completions", BODY)
    finally:
        await p.aclose()
    assert answer == orjson.loads(ANSWER)


@pytest.mark.parametrize("kind", CLIENTS)
async def test_reads_a_large_answer_whole(kind: str, upstream: Upstream) -> None:
    p = provider(kind, upstream.url + "/large")
    try:
        answer = await p.create("/chat/completions", BODY)
    finally:
        await p.aclose()
    assert answer == orjson.loads(LARGE)


@pytest.mark.parametrize("path", ["/chat/completions", "/gzip/chat/completions"])
async def test_a_read_answer_is_left_as_httpx_leaves_it(path: str, upstream: Upstream) -> None:
    answers = []
    for kind in CLIENTS:
        client = CLIENTS[kind]()
        try:
            answers.append(await client.post(upstream.url + path, content=b"{}"))
        finally:
            await client.aclose()
    ours, sdk_default = answers
    assert ours.content == sdk_default.content == ANSWER
    assert await ours.aread() == ANSWER
    assert ours.num_bytes_downloaded == sdk_default.num_bytes_downloaded
    assert ours.is_closed and ours.is_stream_consumed
    assert isinstance(ours.stream, httpx.ByteStream)  # read in one go, not by httpx's `aread`
    unstable = (b"date", b"set-cookie")  # the first answer of the upstream sets a cookie
    assert [h for h in ours.headers.raw if h[0] not in unstable] == [
        h for h in sdk_default.headers.raw if h[0] not in unstable
    ]
    with pytest.raises(httpx.StreamConsumed):
        await anext(ours.aiter_raw())


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer sk", "Content-Type": "application/json"},
        {"Accept": "text/plain", "Host": "elsewhere", "Content-Length": "2"},
        {"User-Agent": "mine", "X-Stainless-Retry-Count": "1"},
    ],
)
async def test_builds_the_request_httpx_builds(headers: dict[str, str]) -> None:
    ours, plain = GatewayAioHttpClient(), httpx.AsyncClient(headers=CLIENTS["gateway"]().headers)
    try:
        built = [
            client.build_request(
                "post",
                "http://127.0.0.1:8000/v1/chat/completions",
                content=b"{}",
                headers=httpx.Headers(headers),
                timeout=httpx.Timeout(3.0),
                extensions={"sni_hostname": "h"},
            )
            for client in (ours, plain)
        ]
    finally:
        await ours.aclose()
        await plain.aclose()
    mine, theirs = built
    assert mine.headers.raw == theirs.headers.raw
    assert (mine.method, mine.url, mine.content) == (theirs.method, theirs.url, theirs.content)
    assert mine.extensions == theirs.extensions


@pytest.mark.parametrize("kind", CLIENTS)
async def test_status_error_keeps_status_and_retry_after(kind: str, upstream: Upstream) -> None:
    p = provider(kind, upstream.url + "/limited")
    try:
        with pytest.raises(ProviderError) as caught:
            await p.create("/chat/completions", BODY)
    finally:
        await p.aclose()
    assert caught.value.status_code == 429
    assert caught.value.headers == {"Retry-After": "7"}


@pytest.mark.parametrize("kind", CLIENTS)
async def test_a_slow_upstream_times_out(kind: str, upstream: Upstream) -> None:
    p = provider(kind, upstream.url + "/slow", timeout=0.3)
    try:
        with pytest.raises(ProviderTimeout):
            await p.create("/chat/completions", BODY)
    finally:
        await p.aclose()


@pytest.mark.parametrize("kind", CLIENTS)
async def test_streams_chunks_until_done(kind: str, upstream: Upstream) -> None:
    p = provider(kind, upstream.url + "/stream")
    try:
        chunks = [chunk async for chunk in p.stream("/chat/completions", {**BODY, "stream": True})]
    finally:
        await p.aclose()
    assert chunks == [{"choices": [], "n": 1}]


async def test_a_refused_connection_is_unreachable_not_a_timeout() -> None:
    # httpx-aiohttp maps every aiohttp connection error to `ConnectTimeout`: with the SDK's
    # default client a refused connection would be a 504, as if the provider were slow.
    p = provider("gateway", f"http://127.0.0.1:{free_port()}/v1")
    try:
        with pytest.raises(ProviderUnreachable):
            await p.create("/chat/completions", BODY)
    finally:
        await p.aclose()


async def test_an_auth_flow_takes_httpx_s_own_path(upstream: Upstream) -> None:
    client = GatewayAioHttpClient(auth=httpx.BasicAuth("user", "secret"))
    try:
        response = await client.post(upstream.url + "/chat/completions", content=b"{}")
    finally:
        await client.aclose()
    assert response.json() == orjson.loads(ANSWER)
    assert upstream.seen[0]["authorization"].startswith("Basic ")
