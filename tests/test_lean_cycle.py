"""`lean_request` and `LeanCycle` start requests and answer them byte for byte as uvicorn.

Each case feeds the same raw request to uvicorn's `HttpToolsProtocol` and to the same protocol
with `lean_request.on_headers_complete` (so a `LeanCycle`; and to the served
`BoundedHttpToolsProtocol`, whose one-write transport joins the writes), with an app sending
the same messages, and compares everything observable: the scope the app got, each write,
whether the connection was closed, what the app's `send` raised, the access log line, and
the framing state the cycle ended in.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from genai_api.http import lean_cycle, lean_request
from genai_api.http.bounded_protocol import BoundedHttpToolsProtocol
from genai_api.http.lean_cycle import LeanCycle
from genai_api.http.lean_request import served_on_headers_complete


class LeanProtocol(HttpToolsProtocol):
    """uvicorn's protocol with only the request's start (and so the cycle) changed: writes
    compare one by one."""

    on_headers_complete = lean_request.on_headers_complete


class Recorder(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        self.writes.append(b"".join(lines))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol  # a websocket's

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )


@dataclass
class Outcome:
    writes: list[bytes]
    closed: bool
    errors: list[str]  # what each `send` raised, in order
    access: list[str]
    state: tuple[Any, ...]  # the last cycle's framing state
    scopes: list[tuple[Any, ...]]  # what the app was told of each request


def start(status: Any = 200, headers: Any = None, **extra: Any) -> dict[str, Any]:
    message = {"type": "http.response.start", "status": status, **extra}
    if headers is not None:
        message["headers"] = headers
    return message


def body(data: Any = b"", more: bool = False) -> dict[str, Any]:
    return {"type": "http.response.body", "body": data, "more_body": more}


SCOPE = ("type", "method", "http_version", "path", "raw_path", "query_string", "root_path")


def script_app(
    messages: list[Any], errors: list[str], scopes: list[tuple[Any, ...]], read: bool = True
) -> Any:
    """An app that reads the request, then sends `messages` (a callable makes one afresh),
    recording and re-raising what `send` raises (uvicorn then answers or closes as it does)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scopes.append(tuple(scope.get(key) for key in SCOPE))
        if read:
            while (await receive()).get("more_body"):
                pass
        for message in messages:
            try:
                await send(message() if callable(message) else message)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                raise

    return app


async def serve(
    protocol_class: type[HttpToolsProtocol],
    messages: list[Any],
    request: bytes | list[bytes] = b"GET /p?q=1 HTTP/1.1\r\nHost: t\r\n\r\n",
    default_headers: list[tuple[bytes, bytes]] | None = None,
    read: bool = True,
    **config_options: Any,
) -> Outcome:
    errors: list[str] = []
    scopes: list[tuple[Any, ...]] = []
    app = script_app(messages, errors, scopes, read)
    config = uvicorn.Config(app, loop="none", log_config=None, lifespan="off", **config_options)
    config.load()
    state = ServerState()
    state.default_headers = list(default_headers or [])
    protocol = protocol_class(
        config=config, server_state=state, app_state={}, _loop=asyncio.get_running_loop()
    )
    protocol.access_log = True
    transport = Recorder()
    protocol.connection_made(transport)
    with access_lines() as access:
        for chunk in [request] if isinstance(request, bytes) else request:
            protocol.data_received(chunk)
            await _settle(state)
    cycle = protocol.cycle
    state_: tuple[Any, ...] = ()  # none if no request got as far as a cycle
    if cycle is not None:
        framing = (cycle.keep_alive, cycle.chunked_encoding, cycle.expected_content_length)
        done = (cycle.response_started, cycle.response_complete, cycle.waiting_for_100_continue)
        state_ = framing + done
    outcome = Outcome(transport.writes, transport.closed, errors, access, state_, scopes)
    protocol.connection_lost(None)  # its timers with it
    return outcome


@contextmanager
def access_lines() -> Iterator[list[str]]:
    """The access log lines uvicorn writes meanwhile."""
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("uvicorn.access")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def _settle(state: ServerState) -> None:
    """Until the app's tasks are done (or wait for more of the request), and a pass after."""
    for _ in range(50):
        await asyncio.sleep(0)
        if not state.tasks:
            break
    await asyncio.sleep(0)


HIT = [
    (b"content-length", b"5"),
    (b"content-type", b"application/json"),
    (b"x-cache", b"HIT"),
    (b"x-cache-key", b"98b81c9c2709d78d9572c57c42ce5df3c98e300504cfbee633f4ec8a6048d543"),
    (b"age", b"0"),
]
GET = b"GET /p?q=1 HTTP/1.1\r\nHost: t\r\n\r\n"
HEAD = b"HEAD /p HTTP/1.1\r\nHost: t\r\n\r\n"
HTTP10 = b"GET /p HTTP/1.0\r\nHost: t\r\n\r\n"
CLOSE = b"GET /p HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
POST = b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
CONTINUE = b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"


def _headers_generator() -> Iterator[tuple[bytes, bytes]]:
    yield (b"content-length", b"2")


def answer(headers: Any, *bodies: dict[str, Any], status: Any = 200) -> list[Any]:
    return [start(status, headers), *bodies]


CL, TE, CONN, X = b"content-length", b"transfer-encoding", b"connection", b"x-a"
EMPTY = (CL, b"0")  # an answer without a body, once its head is accepted

CASES: dict[str, tuple[list[Any], bytes]] = {
    # framing
    "content-length": (answer(HIT, body(b"hello")), GET),
    "names in capitals": (answer([(b"Content-Length", b"2"), (b"X-A", b"B")], body(b"ok")), GET),
    "chunked": (
        answer([(b"content-type", b"a/b")], body(b"a", True), body(b"c", True), body()),
        GET,
    ),
    "chunked, empty body": (answer([], body()), GET),
    "chunked declared": (
        answer([(b"Transfer-Encoding", b"Chunked")], body(b"a", True), body(b"c")),
        GET,
    ),
    "length then chunked": (answer([(CL, b"2"), (TE, b"chunked")], body(b"ab")), GET),
    "chunked then length": (answer([(TE, b"chunked"), (CL, b"9")], body(b"ab")), GET),
    "other transfer-encoding": (answer([(TE, b"gzip")], body(b"ab")), GET),
    "two lengths": (answer([(CL, b"2"), (CL, b"5")], body(b"ab")), GET),
    "length with spaces": (answer([(CL, b" 2 ")], body(b"ab")), GET),
    "HEAD with length": (answer([(CL, b"5")], body(b"hello")), HEAD),
    "HEAD without length": (answer([(b"content-type", b"a/b")], body(b"hello")), HEAD),
    "204": (answer([], body(), status=204), GET),
    "304": (answer([(b"etag", b'"x"')], body(), status=304), GET),
    "204 with a body": (answer([], body(b"x"), status=204), GET),
    "no headers key": ([start(200), body(b"x")], GET),
    "headers a tuple": (answer(((CL, b"2"),), body(b"ok")), GET),
    "headers as lists": (answer([[CL, b"2"]], body(b"ok")), GET),
    "headers a generator": ([lambda: start(200, _headers_generator()), body(b"ok")], GET),
    "headers None": ([{"type": "http.response.start", "status": 200, "headers": None}], GET),
    "status with no phrase": (answer([EMPTY], body(), status=599), GET),
    "unknown status": (answer([], body(), status=600), GET),
    "status a string": (answer([], body(), status="200"), GET),
    "no status": ([{"type": "http.response.start"}, body()], GET),
    # connection
    "app says close": (answer([(CONN, b"close"), EMPTY], body()), GET),
    "app says Keep-Alive, CLOSE": (
        answer([(b"Connection", b"Keep-Alive, CLOSE")], body(b"x")),
        GET,
    ),
    "app says keep-alive": (answer([(CONN, b"keep-alive"), EMPTY], body()), GET),
    "HTTP/1.0 client": (answer([(CL, b"2")], body(b"ok")), HTTP10),
    "client says close": (answer([(CL, b"2")], body(b"ok")), CLOSE),
    "client says close, app too": (answer([(CONN, b"close")], body(b"ok")), CLOSE),
    "two requests at once": (answer([(CL, b"2")], body(b"ok")), GET + GET),
    "a body read": (answer([(CL, b"2")], body(b"ok")), POST),
    # header injection and invalid headers: uvicorn's errors
    "CRLF in a value": (answer([(X, b"a\r\nset-cookie: x=1"), EMPTY], body()), GET),
    "LF in a value": (answer([EMPTY, (X, b"a\nb")], body()), GET),
    "CR in a value": (answer([(X, b"a\rb")], body()), GET),
    "NUL in a value": (answer([(X, b"\x00")], body()), GET),
    "DEL in a value": (answer([(X, b"a\x7f")], body()), GET),
    "unit separator in a value": (answer([(X, b"\x1f")], body()), GET),
    "tab, high bytes, empty": (
        answer([(X, b"a\tb"), (X, b"\x80\xff"), (X, b""), EMPTY], body()),
        GET,
    ),
    "space in a name": (answer([(b"bad name", b"x")], body()), GET),
    "colon in a name": (answer([(b"x:y", b"x")], body()), GET),
    "CRLF in a name": (answer([(b"x\r\ny", b"x")], body()), GET),
    "empty name": (answer([(b"", b"x"), EMPTY], body()), GET),
    "high byte in a name": (answer([(b"x\x80", b"x"), EMPTY], body()), GET),
    "bad length, then a bad value": (answer([(CL, b"abc"), (X, b"a\nb")], body()), GET),
    "bad value, then a bad length": (answer([(X, b"a\nb"), (CL, b"abc")], body()), GET),
    "bad length": (answer([(CL, b"abc")], body()), GET),
    "bad name after a close": (answer([(CONN, b"close"), (b"a b", b"x")], body()), GET),
    "three-item header": (answer([EMPTY, (b"a", b"b", b"c")], body()), GET),
    "str name": (answer([("x-a", b"x")], body()), GET),
    "str value": (answer([(X, "x")], body()), GET),
    "bytearray name and value": (
        answer([(bytearray(b"X-A"), bytearray(b"x")), EMPTY], body()),
        GET,
    ),
    "memoryview value": (answer([(X, memoryview(b"x")), EMPTY], body()), GET),
    "memoryview name": (answer([(memoryview(b"x-a"), b"x")], body()), GET),
    "memoryview length": (answer([(CL, memoryview(b"0"))], body()), GET),
    # the order of messages
    "body first": ([body(b"x")], GET),
    "start twice": ([start(200, []), start(200, [])], GET),
    "after the end": (answer([EMPTY], body(), body()), GET),
    "too long": (answer([(CL, b"1")], body(b"xy")), GET),
    "too short": (answer([(CL, b"3")], body(b"xy")), GET),
    "no answer": ([], GET),
    "head only": ([start(200, [(CL, b"2")])], GET),
}


@pytest.mark.parametrize("case", CASES)
async def test_writes_and_errors_are_uvicorns(case: str) -> None:
    messages, request = CASES[case]
    theirs = await serve(HttpToolsProtocol, messages, request)
    ours = await serve(LeanProtocol, messages, request)
    assert ours == theirs
    served = await serve(BoundedHttpToolsProtocol, messages, request)
    assert b"".join(served.writes) == b"".join(theirs.writes)
    assert (served.closed, served.errors, served.access) == (
        theirs.closed,
        theirs.errors,
        theirs.access,
    )


async def test_header_injection_is_refused_in_uvicorns_words() -> None:
    messages = [start(200, [(b"location", b"/x\r\nset-cookie: admin=1")]), body()]
    ours = await serve(LeanProtocol, messages)
    assert ours.errors == ["RuntimeError: Invalid HTTP header value."]
    assert b"set-cookie" not in b"".join(ours.writes)  # nothing of the head was written
    assert ours.closed  # uvicorn closes a connection whose app failed mid-answer


def get(target: str, *headers: str, version: str = "1.1") -> bytes:
    lines = [f"GET {target} HTTP/{version}", "Host: t", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


REQUESTS = {
    "a query": get("/v1/x?a=1&b=%20"),
    "an empty query": get("/v1/x?"),
    "escapes in the path": get("/a%20b/%2F/%25"),
    "an absolute URL": get("http://h:1/p/q?r"),
    "a fragment": get("/p#f"),
    "asterisk": b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n",
    "HTTP/1.0": get("/p", version="1.0"),
    "HTTP/1.0, keep-alive": get("/p", "Connection: keep-alive", version="1.0"),
    "a websocket upgrade": get("/ws", "Connection: Upgrade", "Upgrade: websocket"),
    "another upgrade": get("/p", "Connection: Upgrade", "Upgrade: h2c"),
    "a method in lower case": b"get /p HTTP/1.1\r\nHost: t\r\n\r\n",
    "a long URL": get("/" + "a" * 2000),
    "one URL twice": get("/same?x") + get("/same?x"),
    "two URLs": get("/one") + get("/two?2"),
}
NOT_CALLED = {"a websocket upgrade", "a method in lower case"}  # a websocket's; a 400
OK = answer([(CL, b"2")], body(b"ok"))


@pytest.mark.parametrize("case", REQUESTS)
@pytest.mark.parametrize("options", [{}, {"root_path": "/api"}, {"limit_concurrency": 1}])
async def test_requests_start_as_uvicorns(case: str, options: dict[str, Any]) -> None:
    request = REQUESTS[case]
    theirs = await serve(HttpToolsProtocol, OK, request, **options)
    assert await serve(LeanProtocol, OK, request, **options) == theirs
    called = "limit_concurrency" not in options and case not in NOT_CALLED
    assert bool(theirs.scopes) is called  # the cases are what they say


async def test_urls_seen_are_remembered_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lean_request, "_URLS", {})
    monkeypatch.setattr(lean_request, "MAX_URLS", 2)
    for path in ("/a", "/b", "/c?x", "/" + "l" * lean_request.MAX_URL_BYTES):
        for options in ({}, {"root_path": "/r"}, {}):  # a root path of its own: made again
            theirs = await serve(HttpToolsProtocol, OK, get(path), **options)
            assert await serve(LeanProtocol, OK, get(path), **options) == theirs
            assert len(lean_request._URLS) <= 2
    assert list(lean_request._URLS) == [b"/c?x"]  # emptied when full; a long URL is not kept


DATE = [(b"date", b"Mon, 01 Jan 2024 00:00:00 GMT"), (b"server", b"uvicorn")]


@pytest.mark.parametrize(
    "defaults", [DATE, [(b"server", b"a\r\nb")], [(b"connection", b"close")], [(b"x y", b"z")]]
)
async def test_default_headers_are_uvicorns(defaults: list[tuple[bytes, bytes]]) -> None:
    messages = [start(200, [(b"content-length", b"2")]), body(b"ok")]
    theirs = await serve(HttpToolsProtocol, messages, default_headers=defaults)
    assert await serve(LeanProtocol, messages, default_headers=defaults) == theirs


@pytest.mark.parametrize("read", [True, False])
async def test_100_continue_is_uvicorns(read: bool) -> None:
    messages = [start(200, [(b"content-length", b"2")]), body(b"ok")]
    chunks = [CONTINUE, b"abc"]
    theirs = await serve(HttpToolsProtocol, messages, chunks, read=read)
    assert await serve(LeanProtocol, messages, chunks, read=read) == theirs
    assert (b"HTTP/1.1 100 Continue\r\n\r\n" in theirs.writes) is read


async def test_a_cycle_is_lean_and_answers_a_hit() -> None:
    messages = [start(200, HIT), body(b"hello")]
    assert (await serve(LeanProtocol, messages)).writes == [
        b"HTTP/1.1 200 OK\r\n"
        + b"".join(name + b": " + value + b"\r\n" for name, value in HIT)
        + b"\r\n",
        b"hello",
    ]
    seen: list[type] = []

    class Watching(BoundedHttpToolsProtocol):
        def on_response_complete(self) -> None:
            seen.append(type(self.cycle))
            super().on_response_complete()

    await serve(Watching, messages)
    assert seen == [LeanCycle]


async def test_names_remembered_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lean_cycle, "_NAMES", {})
    monkeypatch.setattr(lean_cycle, "MAX_NAMES", 4)
    headers = [(b"x-%d" % i, b"v") for i in range(10)] + [(b"content-length", b"0")]
    messages = [start(200, headers), body()]
    theirs = await serve(HttpToolsProtocol, messages)
    assert await serve(LeanProtocol, messages) == theirs
    assert await serve(LeanProtocol, messages) == theirs  # names past the bound: checked again
    assert len(lean_cycle._NAMES) == 4


async def test_a_gone_client_and_back_pressure_are_uvicorns() -> None:
    for protocol_class in (HttpToolsProtocol, LeanProtocol):
        gate = asyncio.Event()

        async def app(scope: Any, receive: Any, send: Any, gate: asyncio.Event = gate) -> None:
            await gate.wait()
            await send(start(200, [(b"content-length", b"2")]))
            await send(body(b"ok"))

        config = uvicorn.Config(app, loop="none", log_config=None, lifespan="off")
        config.load()
        state = ServerState()
        protocol = protocol_class(
            config=config, server_state=state, app_state={}, _loop=asyncio.get_running_loop()
        )
        transport = Recorder()
        protocol.connection_made(transport)
        protocol.data_received(GET)
        protocol.pause_writing()  # the client reads slowly: sending waits
        gate.set()
        await _settle(state)
        assert transport.writes == [] and state.tasks, protocol_class
        protocol.resume_writing()
        await _settle(state)
        assert transport.writes[-1] == b"ok" and not state.tasks, protocol_class

        gate.clear()
        protocol.data_received(GET)
        protocol.connection_lost(None)  # the client is gone: what the app sends goes nowhere
        written = len(transport.writes)
        gate.set()
        await _settle(state)
        assert len(transport.writes) == written and not state.tasks


# uvicorn internals lean_request and LeanCycle copy or rely on. A change here means: compare
# uvicorn's new code with genai_api/http/lean_*.py, adapt them, then update these fingerprints
# (and CHECKED_UVICORN).
FINGERPRINTS = {
    "RequestResponseCycle.send": "abdd8601b326a8da",
    "HttpToolsProtocol.on_headers_complete": "1ea8589acfad92d8",
}


def _fingerprint(function: Any) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:16]


def test_uvicorn_code_is_the_code_lean_cycle_was_checked_against() -> None:
    assert uvicorn.__version__.startswith(lean_cycle.CHECKED_UVICORN)
    found = {
        "RequestResponseCycle.send": _fingerprint(RequestResponseCycle.send),
        "HttpToolsProtocol.on_headers_complete": _fingerprint(
            HttpToolsProtocol.on_headers_complete
        ),
    }
    assert found == FINGERPRINTS, "uvicorn changed: re-check genai_api/http/lean_*.py"
    # lean_request creates the cycle with its arguments in this order.
    assert list(inspect.signature(RequestResponseCycle.__init__).parameters) == [
        "self",
        "scope",
        "transport",
        "flow",
        "logger",
        "access_logger",
        "access_log",
        "default_headers",
        "message_event",
        "expect_100_continue",
        "keep_alive",
        "on_response",
    ]
    # Values are checked as one joined by a tab, one byte at a time: the expression must be
    # a set of single bytes, and allow the tab.
    pattern = httptools_impl.HEADER_VALUE_RE.pattern
    assert pattern == b"[\x00-\x08\x0a-\x1f\x7f]"


def test_the_value_table_refuses_exactly_what_uvicorn_refuses() -> None:
    table = lean_cycle._VALUE_TABLE
    for byte in range(256):
        one = bytes([byte])
        refused = httptools_impl.HEADER_VALUE_RE.search(one) is not None
        assert (one.translate(table) != one) is refused, byte
    assert lean_cycle._JOINT.translate(table) == lean_cycle._JOINT


def test_an_unchecked_uvicorn_keeps_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    assert BoundedHttpToolsProtocol.on_headers_complete is lean_request.on_headers_complete
    monkeypatch.setattr(uvicorn, "__version__", "9.0.0")
    assert served_on_headers_complete() is HttpToolsProtocol.on_headers_complete
