"""The access log: same line, no secret, buffered, nothing lost (in-process and under `serve`)."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import respx

from genai_api.logs import JsonFormatter, RedactSecrets
from genai_api.logs.sink import BufferedStderr
from tests import processes
from tests.conftest import CHAT, chat_response, make_settings, running
from tests.http_burst import burst

TEXT_LINE = re.compile(
    r"\d\d:\d\d:\d\d INFO    genai_api\.access: "
    r"POST /v1/chat/completions 200 cache=(MISS|HIT|COALESCED) model=gpt-4o-mini \d+\.\dms"
)
FIELDS = {"time", "level", "logger", "method", "path", "status", "cache", "model", "ms"}
CLIENT_KEY = "sk-client-key-1234567"
QUERY_SECRET = "query-secret-98765"


class CountingStream(io.StringIO):
    """A stream that counts its writes (each one a system call on a real stderr)."""

    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def access_sink(request: pytest.FixtureRequest) -> Iterator[tuple[BufferedStderr, CountingStream]]:
    """The access logger writing to a `BufferedStderr` of its own, JSON when parametrised so;
    tests call `_alone` first (pytest attaches its capture handlers to every logger that
    does not propagate once the test starts, and their presence turns the fast path off)."""
    json = getattr(request, "param", "text") == "json"
    stream = CountingStream()
    handler = BufferedStderr(stream, json=json)
    handler.addFilter(RedactSecrets())  # as `logging_config` sets it up
    if json:
        handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("genai_api.access")
    saved = logger.handlers[:], logger.propagate, logger.level
    logger.handlers[:], logger.propagate = [handler], False
    logger.setLevel(logging.INFO)
    try:
        yield handler, stream
    finally:
        logger.handlers[:], logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])


def _alone(handler: BufferedStderr) -> None:
    logging.getLogger("genai_api.access").handlers[:] = [handler]


async def _miss_then_hit(upstream: respx.MockRouter) -> None:
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    settings = make_settings(gateway_api_keys=CLIENT_KEY)
    async with running(settings) as gw:
        for _ in range(2):
            answer = await gw.http.post(
                f"/v1/chat/completions?api_key={QUERY_SECRET}",
                json=CHAT,
                headers={"Authorization": f"Bearer {CLIENT_KEY}"},
            )
            assert answer.status_code == 200


# --- the handler's buffer


async def test_access_lines_are_written_together_within_the_flush_interval() -> None:
    stream = CountingStream()
    handler = BufferedStderr(stream, flush_seconds=0.05)
    for n in range(1000):
        handler.access(f"line {n}\n", time.time())
    assert stream.writes == 0  # nothing yet: no system call per line
    await asyncio.sleep(0.2)
    assert stream.writes == 1
    assert stream.getvalue() == "".join(f"line {n}\n" for n in range(1000))


async def test_other_records_are_written_at_once_after_the_lines_pending() -> None:
    stream = CountingStream()
    handler = BufferedStderr(stream, flush_seconds=60)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.access("access 1\n", time.time())
    handler.handle(logging.makeLogRecord({"msg": "careful", "levelno": 30, "levelname": "WARN"}))
    assert stream.getvalue() == "access 1\nWARN careful\n"
    handler.close()


def test_flush_and_close_write_what_is_pending() -> None:
    stream = CountingStream()
    handler = BufferedStderr(stream)
    handler.pending.append("queued\n")
    handler.flush()
    handler.pending.append("at close\n")
    handler.close()
    assert stream.getvalue() == "queued\nat close\n"


def test_a_line_queued_off_an_event_loop_is_written_at_once() -> None:
    stream = CountingStream()
    BufferedStderr(stream).access("no loop\n", time.time())
    assert stream.getvalue() == "no loop\n"


def test_lines_left_by_a_closed_loop_go_out_with_the_next_line() -> None:
    stream = CountingStream()
    handler = BufferedStderr(stream, flush_seconds=30)

    async def queue(line: str) -> None:
        handler.access(line, time.time())

    asyncio.run(queue("first\n"))  # its timer dies with that loop
    assert stream.getvalue() == ""
    handler.access("second\n", time.time() + 31)  # an overdue timer: written now
    assert stream.getvalue() == "first\nsecond\n"


# --- the line


async def test_access_line_is_unchanged_and_secret_free(
    upstream: respx.MockRouter, access_sink: tuple[BufferedStderr, CountingStream]
) -> None:
    handler, stream = access_sink
    _alone(handler)
    await _miss_then_hit(upstream)
    handler.flush()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert all(TEXT_LINE.fullmatch(line) for line in lines), lines
    assert ["cache=MISS" in lines[0], "cache=HIT" in lines[1]] == [True, True]
    assert CLIENT_KEY not in stream.getvalue() and QUERY_SECRET not in stream.getvalue()


async def test_the_fast_line_says_what_the_logged_record_says(
    upstream: respx.MockRouter,
    access_sink: tuple[BufferedStderr, CountingStream],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Written directly or as a record (another handler is attached), the same words."""
    handler, stream = access_sink
    _alone(handler)
    await _miss_then_hit(upstream)
    handler.flush()
    fast = [line.split("genai_api.access: ", 1)[1] for line in stream.getvalue().splitlines()]
    logging.getLogger("genai_api.access").addHandler(caplog.handler)
    upstream.calls.reset()
    await _miss_then_hit(upstream)
    slow = [r.getMessage() for r in caplog.records if r.name == "genai_api.access"]
    latency = re.compile(r"\d+\.\dms$")
    assert [latency.sub("", s) for s in slow] == [latency.sub("", f) for f in fast]


@pytest.mark.parametrize("access_sink", ["json"], indirect=True)
async def test_json_lines_parse_and_carry_the_same_fields(
    upstream: respx.MockRouter, access_sink: tuple[BufferedStderr, CountingStream]
) -> None:
    handler, stream = access_sink
    _alone(handler)
    await _miss_then_hit(upstream)
    logging.getLogger("genai_api.access").warning("not an access line, Bearer %s", CLIENT_KEY)
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert [set(line) for line in lines[:2]] == [FIELDS, FIELDS]
    miss, hit, other = lines
    assert {k: hit[k] for k in FIELDS - {"time", "ms"}} == {
        "level": "INFO",
        "logger": "genai_api.access",
        "method": "POST",
        "path": "/v1/chat/completions",
        "status": 200,
        "cache": "HIT",
        "model": "gpt-4o-mini",
    }
    assert miss["cache"] == "MISS" and isinstance(hit["ms"], float)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", hit["time"])
    assert other["level"] == "WARNING" and "message" in other
    assert CLIENT_KEY not in stream.getvalue() and QUERY_SECRET not in stream.getvalue()


@pytest.mark.parametrize("access_sink", ["text", "json"], indirect=True)
async def test_client_text_in_the_fast_line_is_redacted_and_escaped(
    upstream: respx.MockRouter, access_sink: tuple[BufferedStderr, CountingStream]
) -> None:
    handler, stream = access_sink
    _alone(handler)
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    async with running(make_settings()) as gw:
        await gw.http.post("/v1/chat/completions", json={**CHAT, "model": "sk-in-model-abcdef\nX"})
        await gw.http.get("/v1/password=hunter2/x%0D%0A12:00:00 INFO forged")
    handler.flush()
    output = stream.getvalue()
    assert len(output.splitlines()) == 2
    for secret in ("in-model-abcdef", "hunter2"):
        assert secret not in output
    assert all(line.isprintable() for line in output.splitlines())


# --- under `genai-api serve`

MOCK = {"PROVIDER": "mock", "CACHE_BACKEND": "memory", "LOG_LEVEL": "INFO"}
BODY = orjson.dumps(CHAT)


def _access_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "genai_api.access" in line]


@pytest.mark.slow
def test_served_lines_reach_stderr_within_the_flush_interval(tmp_path: Path) -> None:
    server = processes.gateway(tmp_path, MOCK)
    try:
        server.wait_ready()
        before = len(_access_lines(server.output()))
        httpx.post(server.url + "/v1/chat/completions", content=BODY, timeout=30)
        answered = time.monotonic()
        while len(_access_lines(server.output())) == before:
            assert time.monotonic() - answered < 2.0, "the line was not written"
            time.sleep(0.005)
        waited = time.monotonic() - answered
        assert server.proc.poll() is None  # written by the timer, not at exit
    finally:
        server.stop()
    assert waited < 1.0  # FLUSH_SECONDS is 0.05; the rest is a loaded machine's slack


@pytest.mark.slow
def test_a_burst_of_10000_requests_logs_10000_lines_even_when_stopped_at_once(
    tmp_path: Path,
) -> None:
    server = processes.gateway(tmp_path, MOCK)
    try:
        server.wait_ready()
        counts = asyncio.run(burst(server.port, "/v1/chat/completions", BODY, total=10_000))
    finally:
        server.stop()  # SIGTERM right after the last answer: lines are still buffered
    assert counts == {200: 10_000}
    lines = [line for line in _access_lines(server.output()) if "/v1/chat/completions" in line]
    assert len(lines) == 10_000
    assert all(TEXT_LINE.fullmatch(line) for line in lines)


@pytest.mark.slow
def test_workers_write_every_json_line_before_they_exit(tmp_path: Path) -> None:
    server = processes.gateway(tmp_path, {**MOCK, "LOG_FORMAT": "json"}, workers=2)
    try:
        server.wait_ready()
        counts = asyncio.run(burst(server.port, "/v1/chat/completions", BODY, total=2_000))
    finally:
        server.stop()  # SIGTERM to the supervisor and both workers at once
    assert counts == {200: 2_000}
    records = [orjson.loads(line) for line in server.output().splitlines() if line.strip()]
    access = [r for r in records if r["logger"] == "genai_api.access" and r.get("status")]
    assert len([r for r in access if r["path"] == "/v1/chat/completions"]) == 2_000
    assert all(set(r) == FIELDS for r in access)
    assert any(r["logger"].startswith("uvicorn") for r in records)  # its own lines are JSON too
