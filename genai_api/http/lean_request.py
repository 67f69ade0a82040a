"""uvicorn's `on_headers_complete` (a request's head has been parsed), for less.

What uvicorn does there for every request: decode the method, parse the URL (`httptools`
builds a URL object), decode and unquote its path, prefix the root path, then create the
request/response cycle and start its task. Here the same, but:

- a URL seen lately gives its path, raw path and query from a small table (`_URLS`: a
  served worker sees a handful of paths; short URLs only, emptied when full, so a client
  varying its query strings costs memory bounded by `MAX_URLS` x `MAX_URL_BYTES`);
- the cycle is a `LeanCycle` (`genai_api.http.lean_cycle`), made with its arguments in
  order (called with keywords, a class gets them through a dict built for the call: ~4.7k
  instructions of these), and what is read several times is read once.

Together ~8k instructions a request (callgrind: 153k -> 145k per request for the served
protocol with an app that answers at once). The values are those uvicorn computes: the
table holds what uvicorn's code made of the same bytes with the same root path, and strings
and bytes cannot be changed in place. Everything else is uvicorn's code as it is (0.55):
`tests/test_lean_cycle.py` fails when uvicorn's changes, and `served_on_headers_complete`
gives uvicorn's own method on a uvicorn not checked.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Callable

import httptools
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from genai_api.http.lean_cycle import LeanCycle, uvicorn_checked

MAX_URLS = 256
MAX_URL_BYTES = 512
# A URL's bytes -> (the root path it was made with, scope "path", "raw_path", "query_string").
_URLS: dict[bytes, tuple[str, str, bytes, bytes]] = {}


def served_on_headers_complete() -> Callable[[HttpToolsProtocol], None]:
    """`on_headers_complete` below on the uvicorn versions it was checked against; else
    uvicorn's own (and its own cycle)."""
    if uvicorn_checked():
        return on_headers_complete
    return HttpToolsProtocol.on_headers_complete


def on_headers_complete(self: HttpToolsProtocol) -> None:
    """uvicorn's, but for what the module says (its comments are uvicorn's)."""
    parser = self.parser
    scope = self.scope
    http_version = parser.get_http_version()
    method = parser.get_method()
    scope["method"] = method.decode("ascii")
    if http_version != "1.1":
        scope["http_version"] = http_version
    if parser.should_upgrade() and self._should_upgrade():
        return
    url = self.url
    parts = _URLS.get(url)
    if parts is None or parts[0] != self.root_path:
        parts = _parts(url, self.root_path)
    scope["path"] = parts[1]
    scope["raw_path"] = parts[2]
    scope["query_string"] = parts[3]

    # Handle 503 responses when 'limit_concurrency' is exceeded.
    if self.limit_concurrency is not None and (
        len(self.connections) >= self.limit_concurrency or len(self.tasks) >= self.limit_concurrency
    ):
        app = service_unavailable
        message = "Exceeded concurrency limit."
        self.logger.warning(message)
    else:
        app = self.app

    existing_cycle = self.cycle
    cycle = self.cycle = LeanCycle(
        scope,
        self.transport,
        self.flow,
        self.logger,
        self.access_logger,
        self.access_log,
        self.server_state.default_headers,
        asyncio.Event(),
        self.expect_100_continue,
        http_version != "1.0" and parser.should_keep_alive(),
        self.on_response_complete,
    )
    if existing_cycle is None or existing_cycle.response_complete:
        # Standard case - start processing the request.
        self._start_asgi_task(cycle, app)
    else:
        # Pipelined HTTP requests need to be queued up.
        self.flow.pause_reading()
        self.pipeline.appendleft((cycle, app))


def _parts(url: bytes, root_path: str) -> tuple[str, str, bytes, bytes]:
    """uvicorn's code from a URL to the scope's path, raw path and query (remembered)."""
    parsed_url = httptools.parse_url(url)
    raw_path = parsed_url.path
    path = raw_path.decode("ascii")
    if "%" in path:
        path = urllib.parse.unquote(path)
    full_path = root_path + path
    full_raw_path = root_path.encode("ascii") + raw_path
    parts = (root_path, full_path, full_raw_path, parsed_url.query or b"")
    if len(url) <= MAX_URL_BYTES:
        if len(_URLS) >= MAX_URLS:
            _URLS.clear()
        _URLS[url] = parts
    return parts
