"""CORS (`CORS_ALLOW_ORIGINS`): browser pages of the allowed origins can call the API and read
its cache headers; any other origin is blocked before the API sees the request.

The browser tests run a real headless Chromium (`tests.chromium`) on a page served from one
origin (a throwaway static server) calling a live `genai-api serve` on another, so what is
checked is what a browser does with the answers, not what the headers look like to httpx.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import respx

from genai_api.http.cors import EXPOSED
from tests.chromium import Chromium, Page, needs_chromium
from tests.conftest import CHAT, chat_response, make_settings, running
from tests.live_server import live_server

KEY = "browser-key"
ADMIN = "browser-admin"
BLANK = b"<!doctype html><html><head><title>front-end</title></head><body>chat ui</body></html>"


@pytest.fixture(scope="module")
def page_port() -> Iterator[int]:
    """A static server for the front-end's page (its origin is what CORS judges)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(BLANK)))
            self.end_headers()
            self.wfile.write(BLANK)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, page_port: int) -> Iterator[str]:
    env = {
        "CORS_ALLOW_ORIGINS": f"http://127.0.0.1:{page_port}",
        "GATEWAY_API_KEYS": KEY,
        "ADMIN_API_KEY": ADMIN,
    }
    with live_server(tmp_path_factory.mktemp("cors"), env) as url:
        yield url


@pytest_asyncio.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Chromium]:
    async with Chromium.launch(tmp_path / "profile") as chromium:
        yield chromium


async def _front_end(browser: Chromium, origin: str) -> Page:
    page = await browser.new_page(width=1200, height=800)
    await page.goto(origin + "/")
    assert await page.evaluate("location.origin") == origin
    return page


# What a chat front-end does: fetch with a bearer and JSON (both need a preflight), then read
# the answer and the headers it is allowed to read. Errors are returned, not thrown.
CALL = """
(async () => {
  try {
    const r = await fetch(%(url)s, {method: %(method)s, headers: %(headers)s,
                                     body: %(body)s});
    const headers = {};
    for (const name of %(read)s) headers[name] = r.headers.get(name);
    return {status: r.status, headers, text: await r.text()};
  } catch (e) {
    return {failed: e.name + ": " + e.message};
  }
})()
"""


async def call(
    page: Page,
    url: str,
    *,
    method: str = "POST",
    body: Any = None,
    key: str = KEY,
    read: tuple[str, ...] = (*EXPOSED, "content-type"),
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}", "X-Stainless-Lang": "js"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    script = CALL % {
        "url": json.dumps(url),
        "method": json.dumps(method),
        "headers": json.dumps(headers),
        "body": json.dumps(json.dumps(body)) if body is not None else "undefined",
        "read": json.dumps([h.lower() for h in read]),
    }
    result: dict[str, Any] = await page.evaluate(script)
    return result


def _requests(gateway: str) -> int:
    stats = httpx.get(gateway + "/v1/cache/stats", headers={"Authorization": f"Bearer {ADMIN}"})
    doc = stats.json()
    return int(doc["hits"] + doc["misses"] + doc["coalesced"] + doc["bypassed"])


@needs_chromium
async def test_a_page_of_an_allowed_origin_calls_the_api_and_reads_the_cache_headers(
    browser: Chromium, gateway: str, page_port: int
) -> None:
    page = await _front_end(browser, f"http://127.0.0.1:{page_port}")
    # temperature 0: the same page asking twice is a plain repeat, not a regenerate.
    chat = {**CHAT, "messages": [{"role": "user", "content": "from a browser"}], "temperature": 0}
    first = await call(page, gateway + "/v1/chat/completions", body=chat)
    second = await call(page, gateway + "/v1/chat/completions", body=chat)
    assert first["status"] == second["status"] == 200, first
    assert (first["headers"]["x-cache"], second["headers"]["x-cache"]) == ("MISS", "HIT")
    # Exposed: without Access-Control-Expose-Headers a page reads none of these (null).
    assert second["headers"]["x-cache-key"] == first["headers"]["x-cache-key"]
    assert second["headers"]["age"] is not None
    assert int(second["headers"]["x-cache-saved-tokens"]) > 0
    assert float(second["headers"]["x-cache-saved-cost-usd"]) > 0
    assert json.loads(second["text"]) == json.loads(first["text"])

    embeddings = await call(
        page,
        gateway + "/v1/embeddings",
        body={"model": "text-embedding-3-small", "input": ["one", "two"]},
    )
    assert embeddings["status"] == 200, embeddings
    assert (embeddings["headers"]["x-cache-hits"], embeddings["headers"]["x-cache-misses"]) == (
        "0",
        "2",
    )

    streamed = await call(page, gateway + "/v1/chat/completions", body={**chat, "stream": True})
    assert (streamed["status"], streamed["headers"]["x-cache"]) == (200, "HIT")
    assert streamed["headers"]["content-type"].startswith("text/event-stream")
    assert streamed["text"].rstrip().endswith("data: [DONE]")

    models = await call(page, gateway + "/v1/models", method="GET")
    assert "gpt-4o-mini" in {m["id"] for m in json.loads(models["text"])["data"]}
    stats = await call(page, gateway + "/v1/cache/stats", method="GET", key=ADMIN)
    assert json.loads(stats["text"])["hits"] >= 2
    deleted = await call(page, gateway + "/v1/cache", method="DELETE", key=ADMIN, body={})
    assert (deleted["status"], json.loads(deleted["text"])["deleted"]) == (200, 3)

    # An error is readable too: the page can tell a wrong key from a network failure.
    refused = await call(page, gateway + "/v1/chat/completions", body=chat, key="wrong")
    assert refused["status"] == 401
    assert json.loads(refused["text"])["error"]["code"] == "invalid_api_key"


@needs_chromium
async def test_a_page_of_another_origin_is_blocked_before_the_api_sees_it(
    browser: Chromium, gateway: str, page_port: int
) -> None:
    # Same server, other host name: another origin, which the gateway does not name.
    page = await _front_end(browser, f"http://localhost:{page_port}")
    before = _requests(gateway)
    chat = {**CHAT, "messages": [{"role": "user", "content": "from elsewhere"}]}
    blocked = await call(page, gateway + "/v1/chat/completions", body=chat)
    assert blocked == {"failed": "TypeError: Failed to fetch"}
    assert _requests(gateway) == before  # the preflight failed: the POST was never sent


def _routes_under_v1() -> list[tuple[str, str]]:
    """(method, path) of every `/v1` route the app declares, parameters filled in."""
    from fastapi.routing import APIRoute

    from genai_api.routes import admin, completions, embeddings, metrics, models, prompts

    found = []
    routes = [
        r
        for m in (admin, completions, embeddings, metrics, models, prompts)
        for r in m.router.routes
    ]
    for route in routes:
        if isinstance(route, APIRoute) and route.path.startswith("/v1/"):
            path = route.path.replace("{model:path}", "gpt-4o-mini").replace("{name}", "summarise")
            found += [(method, path) for method in sorted(route.methods or ()) if method != "HEAD"]
    return sorted(set(found))


V1_ROUTES = _routes_under_v1()


@pytest.mark.parametrize(("method", "path"), V1_ROUTES, ids=[f"{m} {p}" for m, p in V1_ROUTES])
async def test_every_v1_route_answers_a_preflight(
    upstream: respx.MockRouter, method: str, path: str
) -> None:
    origin = "https://chat.example"
    settings = make_settings(cors_allow_origins=origin, gateway_api_keys=KEY)
    async with running(settings) as gw:
        answer = await gw.http.options(
            path,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os",
            },
        )
    assert answer.status_code == 200, answer.text  # before authentication: no key on it
    assert answer.headers["access-control-allow-origin"] == origin
    assert method in answer.headers["access-control-allow-methods"].split(", ")
    allowed = answer.headers["access-control-allow-headers"]
    assert allowed == "authorization, content-type, x-stainless-os"
    assert int(answer.headers["access-control-max-age"]) > 0


async def test_the_hot_path_and_its_errors_carry_the_cors_headers(
    upstream: respx.MockRouter,
) -> None:
    # POSTs to the completion paths bypass FastAPI's stack (`hot_routes`): CORS wraps both.
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    origin = "https://chat.example"
    settings = make_settings(cors_allow_origins=origin, gateway_api_keys=KEY)
    async with running(settings) as gw:
        hit = [
            await gw.http.post(
                "/v1/chat/completions",
                json=CHAT,
                headers={"Origin": origin, "Authorization": f"Bearer {KEY}"},
            )
            for _ in range(2)
        ][-1]
        refused = await gw.http.post("/v1/chat/completions", json=CHAT, headers={"Origin": origin})
        other = await gw.http.post(
            "/v1/chat/completions",
            json=CHAT,
            headers={"Origin": "https://evil.example", "Authorization": f"Bearer {KEY}"},
        )
    assert hit.headers["x-cache"] == "HIT"
    for answer in (hit, refused):
        assert answer.headers["access-control-allow-origin"] == origin
        exposed = answer.headers["access-control-expose-headers"].split(", ")
        assert {"X-Cache", "X-Cache-Key", "Age", "X-Cache-Saved-Cost-USD"} <= set(exposed)
    assert refused.status_code == 401
    assert "access-control-allow-origin" not in other.headers  # answered; the browser hides it


async def test_a_post_without_origin_skips_cors_and_a_get_keeps_vary_origin(
    upstream: respx.MockRouter,
) -> None:
    # No browser sends a POST without Origin, and no shared cache keeps a POST's answer:
    # server-side clients (the SDKs) are not charged for CORS. A GET's answer may be cached,
    # so it says it varies by Origin whoever asked.
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    settings = make_settings(cors_allow_origins="https://chat.example")
    async with running(settings) as gw:
        sdk = await gw.http.post("/v1/chat/completions", json=CHAT)
        page = await gw.http.post(
            "/v1/chat/completions", json=CHAT, headers={"Origin": "https://chat.example"}
        )
        models = await gw.http.get("/v1/models")
    assert sdk.status_code == page.status_code == 200
    assert not any(h.startswith("access-control-") or h == "vary" for h in sdk.headers)
    assert page.headers["access-control-allow-origin"] == "https://chat.example"
    assert "Origin" in page.headers["vary"]
    assert "Origin" in models.headers["vary"]


async def test_any_origin_on_an_open_gateway(upstream: respx.MockRouter) -> None:
    async with running(make_settings(cors_allow_origins="*")) as gw:
        preflight = await gw.http.options(
            "/v1/embeddings",
            headers={"Origin": "https://any.example", "Access-Control-Request-Method": "POST"},
        )
        models = await gw.http.get("/v1/models", headers={"Origin": "https://any.example"})
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert models.headers["access-control-allow-origin"] == "*"


async def test_cors_is_off_by_default(upstream: respx.MockRouter) -> None:
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    async with running(make_settings()) as gw:
        preflight = await gw.http.options(
            "/v1/chat/completions",
            headers={"Origin": "https://chat.example", "Access-Control-Request-Method": "POST"},
        )
        answer = await gw.http.post(
            "/v1/chat/completions", json=CHAT, headers={"Origin": "https://chat.example"}
        )
    assert preflight.status_code == 405
    assert answer.status_code == 200
    for response in (preflight, answer):
        assert not any(h.startswith("access-control-") for h in response.headers)
