"""gzip (`GZIP_MIN_BYTES`): whole JSON answers above the size, for clients that ask; never a
stream, never embeddings, and nothing at all for a client that does not ask."""

from __future__ import annotations

import gzip
from typing import Any

import httpx
import orjson
import pytest
import respx

from genai_api.http.compression import accepts_gzip
from tests.conftest import CHAT, Running, chat_response, make_settings, running
from tests.embeddings_provider import Provider
from tests.streaming_client import sse_route

LONG = " ".join(f"word{i % 97} and more text" for i in range(200))  # ~4.5 KB of answer
GZIP = {"Accept-Encoding": "gzip"}
IDENTITY = {"Accept-Encoding": "identity"}


async def _post(gw: Running, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    """The answer, read without httpx's decoding: (headers, wire bytes)."""
    request = gw.http.build_request("POST", path, json=body, headers=headers)
    response = await gw.http.send(request, stream=True)
    wire = b"".join([chunk async for chunk in response.aiter_raw()])
    await response.aclose()
    return response, wire


@pytest.fixture
def long_answer(upstream: respx.MockRouter) -> respx.Route:
    return upstream.post("/chat/completions").mock(
        return_value=httpx.Response(200, json=chat_response(LONG))
    )


async def test_a_large_answer_is_gzipped_for_a_client_that_asks(long_answer: respx.Route) -> None:
    async with running(make_settings()) as gw:
        miss, wire = await _post(gw, "/v1/chat/completions", CHAT, GZIP)
        hit, hit_wire = await _post(gw, "/v1/chat/completions", CHAT, GZIP)
        plain, plain_wire = await _post(gw, "/v1/chat/completions", CHAT, IDENTITY)
        sdk = await gw.client.chat.completions.with_raw_response.create(**CHAT)
    for answer, body in ((miss, wire), (hit, hit_wire)):
        assert answer.headers["content-encoding"] == "gzip"
        assert "Accept-Encoding" in answer.headers["vary"]
        assert int(answer.headers["content-length"]) == len(body) < len(plain_wire) / 3
        assert orjson.loads(gzip.decompress(body)) == orjson.loads(plain_wire)
    assert hit.headers["x-cache"] == "HIT" and hit.headers["x-cache-key"]
    assert "content-encoding" not in plain.headers
    assert int(plain.headers["content-length"]) == len(plain_wire)
    # The openai SDK asks for gzip (httpx does) and reads the answer as ever.
    assert sdk.headers["content-encoding"] == "gzip"
    assert sdk.parse().choices[0].message.content == LONG


async def test_a_large_answer_of_a_fastapi_route_is_gzipped_too(long_answer: respx.Route) -> None:
    # Prompt templates take FastAPI's stack, not the direct hot path: its middleware gzips.
    body = {"variables": {"text": "A long story.", "sentences": 1}}
    async with running(make_settings()) as gw:
        answer, wire = await _post(gw, "/v1/prompts/summarise/completions", body, GZIP)
        plain, plain_wire = await _post(gw, "/v1/prompts/summarise/completions", body, IDENTITY)
    assert answer.headers["content-encoding"] == "gzip" and answer.headers["x-cache"] == "MISS"
    assert orjson.loads(gzip.decompress(wire)) == orjson.loads(plain_wire)
    assert "content-encoding" not in plain.headers


async def test_a_small_answer_is_sent_as_it_is(upstream: respx.MockRouter) -> None:
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    async with running(make_settings()) as gw:
        answer, wire = await _post(gw, "/v1/chat/completions", CHAT, GZIP)
    assert len(wire) < 1400
    assert "content-encoding" not in answer.headers and "vary" not in answer.headers


async def test_a_stream_is_never_gzipped(long_answer: respx.Route) -> None:
    async with running(make_settings()) as gw:
        await gw.http.post("/v1/chat/completions", json=CHAT)  # stored: the stream replays it
        answer, wire = await _post(gw, "/v1/chat/completions", {**CHAT, "stream": True}, GZIP)
    assert answer.headers["x-cache"] == "HIT"
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert "content-encoding" not in answer.headers
    assert len(wire) > 1400 and wire.rstrip().endswith(b"data: [DONE]")


async def test_a_live_stream_is_never_gzipped(upstream: respx.MockRouter) -> None:
    chunks = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": LONG}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    sse_route(upstream, chunks)
    async with running(make_settings()) as gw:
        answer, wire = await _post(gw, "/v1/chat/completions", {**CHAT, "stream": True}, GZIP)
    assert answer.headers["x-cache"] == "MISS"
    assert "content-encoding" not in answer.headers
    assert LONG.encode() in wire


async def test_embeddings_are_not_gzipped(upstream: respx.MockRouter) -> None:
    # Their vectors compress poorly for a great deal of CPU (docs/browsers.md, "Compression").
    upstream.post("/embeddings").mock(side_effect=Provider(dims=64))
    body = {"model": "text-embedding-3-small", "input": [f"text {i}" for i in range(8)]}
    async with running(make_settings()) as gw:
        answer, wire = await _post(gw, "/v1/embeddings", body, GZIP)
    assert answer.status_code == 200 and len(wire) > 1400
    assert "content-encoding" not in answer.headers


async def test_the_stats_with_a_series_are_gzipped(upstream: respx.MockRouter) -> None:
    async with running(make_settings()) as gw:
        answer = await gw.http.get("/v1/cache/stats?series=minute", headers=GZIP)
    assert answer.headers["content-encoding"] == "gzip"
    assert len(answer.json()["series"]["points"]) == 1440


async def test_gzip_min_bytes_zero_turns_it_off(long_answer: respx.Route) -> None:
    async with running(make_settings(gzip_min_bytes=0)) as gw:
        answer, wire = await _post(gw, "/v1/chat/completions", CHAT, GZIP)
    assert "content-encoding" not in answer.headers
    assert orjson.loads(wire)["choices"][0]["message"]["content"] == LONG


@pytest.mark.parametrize(
    ("values", "accepted"),
    [
        ([], False),
        ([b"identity"], False),
        ([b"gzip"], True),
        ([b"GZIP"], True),
        ([b"br, gzip, deflate"], True),
        ([b"deflate", b"gzip;q=0.5"], True),
        ([b"gzip;q=0"], False),
        ([b"gzip; q=0.0, br"], False),
        ([b"x-gzip"], True),
        ([b"gzipped"], False),
        ([b"*"], False),  # any coding is fine with this client: identity is one
    ],
)
def test_accept_encoding_is_read_as_http_says(values: list[bytes], accepted: bool) -> None:
    headers = [(b"host", b"gw"), *((b"accept-encoding", v) for v in values)]
    assert accepts_gzip(headers) is accepted
