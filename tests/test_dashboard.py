"""`GET /dashboard`: a self-contained page, checked in a real headless Chromium against a live
server: the numbers it draws are the numbers `/v1/cache/stats` reports."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from tests.conftest import make_settings, running
from tests.live_server import live_server

ADMIN = "dashboard-admin-key"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (apt-get install chromium) - the page is not rendered",
)


class Elements(HTMLParser):
    """The attributes of every element with an id, and of every per-model table cell."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, str]] = {}
        self.cells: dict[tuple[str, str], str] = {}
        self.body: dict[str, str] = {}
        self._row: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = a
        if "id" in a:
            self.by_id[a["id"]] = a
        if tag == "tr" and "data-model" in a:
            self._row = a["data-model"]
        if tag == "td" and self._row is not None:
            self.cells[(self._row, a["data-field"])] = a["data-value"]


def dump_dom(url: str, profile: Path) -> Elements:
    """Load `url` in headless Chromium, let its scripts run, parse the resulting DOM."""
    assert CHROMIUM is not None
    dom = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",  # wait for the page's fetch, in virtual time
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    parsed = Elements()
    parsed.feed(dom)
    return parsed


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with live_server(tmp_path_factory.mktemp("dash"), {"ADMIN_API_KEY": ADMIN}) as url:
        with httpx.Client(base_url=url, timeout=10) as client:
            for model, text, times in (("gpt-4o-mini", "a", 3), ("gpt-4o", "b", 2)):
                body = {"model": model, "messages": [{"role": "user", "content": text}]}
                for _ in range(times):
                    client.post("/v1/chat/completions", json=body).raise_for_status()
            client.post(
                "/v1/completions",
                json={"model": "gpt-3.5-turbo-instruct", "prompt": "hi"},
                headers={"Cache-Control": "no-store"},
            ).raise_for_status()
        yield url


def stats(url: str) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {ADMIN}"}
    doc: dict[str, Any] = httpx.get(url + "/v1/cache/stats", headers=auth).json()
    return doc


@needs_chromium
def test_page_draws_the_numbers_of_the_stats(server: str, tmp_path: Path) -> None:
    page = dump_dom(f"{server}/dashboard#key={ADMIN}", tmp_path)
    expected = stats(server)
    assert page.body["data-state"] == "ready"
    shown = {
        k: page.by_id[k]["data-value"]
        for k in (
            "hits",
            "misses",
            "coalesced",
            "bypassed",
            "errors",
            "hit-ratio",
            "requests",
            "tokens-saved",
            "cost-saved",
            "cost-spent",
        )
    }
    assert shown == {
        "hits": str(expected["hits"]),
        "misses": str(expected["misses"]),
        "coalesced": str(expected["coalesced"]),
        "bypassed": str(expected["bypassed"]),
        "errors": str(expected["errors"]),
        "hit-ratio": str(expected["hit_ratio"]),
        "requests": "6",
        "tokens-saved": str(expected["tokens_saved"]["total"]),
        "cost-saved": expected["cost_saved_usd"],
        "cost-spent": expected["cost_spent_usd"],
    }
    assert (expected["hits"], expected["misses"], expected["bypassed"]) == (3, 2, 1)
    for model, counters in expected["by_model"].items():
        assert page.cells[(model, "hits")] == str(counters["hits"])
        assert page.cells[(model, "cost_saved_usd")] == counters["cost_saved_usd"]
        assert page.cells[(model, "tokens_saved")] == str(counters["tokens_saved"]["total"])
    assert page.cells[("total", "cost_spent_usd")] == expected["cost_spent_usd"]
    # Semantic hits (models that opt in) have cards and columns of their own.
    assert page.by_id["semantic-hits"]["data-value"] == str(expected["semantic_hits"])
    assert page.by_id["semantic-cost-saved"]["data-value"] == expected["semantic_cost_saved_usd"]
    assert page.cells[("total", "semantic_hits")] == str(expected["semantic_hits"])
    # The charts are drawn from the last hour's buckets: every request so far is in them.
    requests, saved = page.by_id["chart-requests"], page.by_id["chart-saved"]
    assert (requests["data-points"], requests["data-requests"]) == ("60", "6")
    assert saved["data-cost-saved"] == expected["cost_saved_usd"]
    assert saved["data-tokens"] == str(expected["tokens_saved"]["total"])


@needs_chromium
def test_page_without_the_admin_key_says_so(server: str, tmp_path: Path) -> None:
    page = dump_dom(f"{server}/dashboard", tmp_path)
    assert page.body["data-state"] == "unauthorized"
    assert "data-value" not in page.by_id["hits"]


async def test_page_is_self_contained_with_a_strict_policy(upstream: respx.MockRouter) -> None:
    async with running(make_settings(admin_api_key=ADMIN)) as gw:
        answer = await gw.http.get("/dashboard")
    assert answer.status_code == 200  # static, no data: the key is needed for the stats only
    assert answer.headers["content-type"].startswith("text/html")
    csp = answer.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "script-src 'sha256-" in csp and "unsafe-inline" not in csp
    html = answer.text
    assert " src=" not in html and "<link" not in html  # nothing loaded from anywhere
    assert [u for u in ("http://", "https://") if u in html.replace("http://www.w3.org", "")] == []
