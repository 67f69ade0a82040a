"""`GET /dashboard`: a self-contained page, checked in a real headless Chromium against a live
server: the numbers it draws are the numbers `/v1/cache/stats` reports, and it reads as a
person would want it to at a desktop's 1400 px and a phone's 390 px (nothing overflows its
tile, money at a readable precision with the exact amount on hover, a local time)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import respx

from genai_api.savings.money import plain
from tests.chromium import CHROMIUM, Chromium, Page, needs_chromium
from tests.conftest import make_settings, running, stats_doc
from tests.live_server import live_server

ADMIN = "dashboard-admin-key"
SCREENSHOTS = Path(__file__).resolve().parent.parent / ".screenshots"  # kept for a person


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


def usd(amount: Decimal | int) -> str:
    """A stats dollar figure as the server wrote it (an int when it had no decimals)."""
    return plain(Decimal(amount))


def stats(url: str) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {ADMIN}"}
    return stats_doc(httpx.get(url + "/v1/cache/stats", headers=auth))


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
            "provider-errors",
            "hit-ratio",
            "requests",
            "tokens-saved",
            "cost-saved",
            "cost-spent",
        )
    }
    # Dollars are the server's digits, exactly: the page reads the JSON numbers' source text.
    assert shown == {
        "hits": str(expected["hits"]),
        "misses": str(expected["misses"]),
        "coalesced": str(expected["coalesced"]),
        "bypassed": str(expected["bypassed"]),
        "errors": str(expected["errors"]),
        "provider-errors": str(expected["provider_errors"]),
        "hit-ratio": str(expected["hit_ratio"]),
        "requests": "6",
        "tokens-saved": str(expected["tokens_saved"]["total"]),
        "cost-saved": usd(expected["cost_saved_usd"]),
        "cost-spent": usd(expected["cost_spent_usd"]),
    }
    assert (expected["hits"], expected["misses"], expected["bypassed"]) == (3, 2, 1)
    for model, counters in expected["by_model"].items():
        assert page.cells[(model, "hits")] == str(counters["hits"])
        assert page.cells[(model, "cost_saved_usd")] == usd(counters["cost_saved_usd"])
        assert page.cells[(model, "tokens_saved")] == str(counters["tokens_saved"]["total"])
        assert page.cells[(model, "provider_errors")] == "0"
    assert page.cells[("total", "cost_spent_usd")] == usd(expected["cost_spent_usd"])
    # Semantic hits (models that opt in) have cards and columns of their own.
    assert page.by_id["semantic-hits"]["data-value"] == str(expected["semantic_hits"])
    assert page.by_id["semantic-cost-saved"]["data-value"] == str(
        expected["semantic_cost_saved_usd"]
    )
    assert page.cells[("total", "semantic_hits")] == str(expected["semantic_hits"])
    # The charts are drawn from the last hour's buckets: every request so far is in them.
    requests, saved = page.by_id["chart-requests"], page.by_id["chart-saved"]
    assert (requests["data-points"], requests["data-requests"]) == ("60", "6")
    assert saved["data-cost-saved"] == usd(expected["cost_saved_usd"])
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


# A price with six decimals per 1M tokens: a token costs 123.456789123457 USD, so totals
# carry more significant digits than a float holds, and the tiles get large amounts.
BUSY_MODELS = """
[models."gpt-4o-mini"]
input_per_million = "123456789.123457"
output_per_million = "0.6"
"""


@pytest.fixture(scope="module")
def busy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """~62 requests of every kind, as the page was looked at: chats, completions, embeddings
    batches (two inputs each), a bypass."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    cwd = tmp_path_factory.mktemp("busy")
    (cwd / "models.toml").write_text(BUSY_MODELS)
    env = {"ADMIN_API_KEY": ADMIN, "MODELS_FILE": str(cwd / "models.toml")}
    with live_server(cwd, env) as url, httpx.Client(base_url=url, timeout=10) as client:
        for i in range(30):
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q{i % 9}"}]}
            client.post("/v1/chat/completions", json=body).raise_for_status()
        for i in range(12):
            body = {"model": "text-embedding-3-small", "input": [f"doc {i % 5}", f"doc {i % 7}"]}
            client.post("/v1/embeddings", json=body).raise_for_status()
        for i in range(16):
            body = {"model": "gpt-3.5-turbo-instruct", "prompt": f"p{i % 4}"}
            client.post("/v1/completions", json=body).raise_for_status()
        for _ in range(4):
            body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "no-store"}]}
            client.post(
                "/v1/chat/completions", json=body, headers={"Cache-Control": "no-store"}
            ).raise_for_status()
        yield url


@pytest_asyncio.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Chromium]:
    async with Chromium.launch(tmp_path / "profile") as chromium:
        yield chromium


async def _dashboard(browser: Chromium, url: str, width: int, height: int) -> Page:
    page = await browser.new_page(width=width, height=height, mobile=width < 600)
    # A fixed zone and language, so the test knows what "local time" must read.
    await page.send("Emulation.setTimezoneOverride", {"timezoneId": "Asia/Kolkata"})
    await page.send("Emulation.setLocaleOverride", {"locale": "en-US"})
    await page.goto(f"{url}/dashboard#key={ADMIN}")
    await page.wait_for("document.body.dataset.state === 'ready'")
    return page


# Every tile, and everything in it, must fit: an element whose content is wider than its box
# overflows (a number running out of its tile, or cut). The page itself must not scroll
# sideways; the per-model table may, inside its own scroll box.
OVERFLOWS = """
(() => {
  const out = [];
  const fits = (el) => el.scrollWidth <= el.clientWidth + 1;
  for (const el of document.querySelectorAll(".card, .card *, header, header *, section h2")) {
    if (el.clientWidth && !fits(el)) {
      out.push((el.id || el.className || el.tagName) + ": " + el.scrollWidth + " > " +
               el.clientWidth + " (" + el.textContent.trim().slice(0, 40) + ")");
    }
  }
  for (const card of document.querySelectorAll(".card")) {
    const value = card.querySelector(".value");
    const line = parseFloat(getComputedStyle(value).lineHeight);
    if (value.getBoundingClientRect().height > line * 1.5) out.push(value.id + ": wraps");
    if (card.getBoundingClientRect().right > innerWidth) out.push(value.id + ": off the page");
  }
  if (document.documentElement.scrollWidth > innerWidth) {
    out.push("page: " + document.documentElement.scrollWidth + " > " + innerWidth);
  }
  return out;
})()
"""


@needs_chromium
@pytest.mark.parametrize(("width", "height"), [(1400, 900), (390, 844)], ids=["desktop", "phone"])
async def test_every_tile_fits_at_desktop_and_phone_widths(
    busy_server: str, browser: Chromium, tmp_path: Path, width: int, height: int
) -> None:
    page = await _dashboard(browser, busy_server, width, height)
    assert await page.evaluate(OVERFLOWS) == []
    shot = tmp_path / f"dashboard-{width}.png"
    # The whole page's screenshot is exactly as wide as the window: nothing sticks out.
    assert (await page.screenshot(shot))[0] == width
    SCREENSHOTS.mkdir(exist_ok=True)
    shutil.copy(shot, SCREENSHOTS / shot.name)  # for a person to look at


@needs_chromium
async def test_money_reads_short_with_the_exact_amount_on_hover(
    busy_server: str, browser: Chromium
) -> None:
    page = await _dashboard(browser, busy_server, 1400, 900)
    expected = stats(busy_server)
    tiles = await page.evaluate(
        """Object.fromEntries(["cost-saved", "cost-spent"].map((id) => [id, {
             text: document.getElementById(id).textContent,
             title: document.getElementById(id).title,
             value: document.getElementById(id).dataset.value}]))"""
    )
    for tile, key in (("cost-saved", "cost_saved_usd"), ("cost-spent", "cost_spent_usd")):
        exact = usd(expected[key])
        assert repr(float(exact)) != exact  # more digits than a float holds
        assert tiles[tile]["value"] == exact  # read from the JSON number's own digits
        assert tiles[tile]["title"] == "$" + exact
        assert len(tiles[tile]["text"]) <= 8, tiles[tile]  # e.g. $1.2M
    cell = await page.evaluate(
        """(() => { const td = document.querySelector(
             'tr[data-model="gpt-4o-mini"] td[data-field="cost_saved_usd"]');
           return {text: td.textContent, title: td.title}; })()"""
    )
    assert cell["title"] == "$" + usd(expected["by_model"]["gpt-4o-mini"]["cost_saved_usd"])


@needs_chromium
async def test_since_is_a_local_time_and_requests_say_what_they_count(
    busy_server: str, browser: Chromium
) -> None:
    page = await _dashboard(browser, busy_server, 1400, 900)
    expected = stats(busy_server)
    since = await page.evaluate(
        """(() => { const t = document.getElementById("since");
           return {datetime: t.dateTime, text: t.textContent, title: t.title}; })()"""
    )
    local = datetime.fromisoformat(expected["since"].replace("Z", "+00:00"))
    local += timedelta(hours=5, minutes=30)  # Asia/Kolkata, which has no daylight time
    hour = local.hour % 12 or 12
    assert since["datetime"] == since["title"] == expected["since"]
    assert f"{hour}:{local.minute:02}" in since["text"] and "T" not in since["text"]
    assert str(local.year) in since["text"]
    label = await page.evaluate(
        "document.getElementById('requests').previousElementSibling.textContent"
    )
    assert label == "requests and embedding inputs"
    # 62 requests: the 12 embeddings batches count 24 inputs.
    requests = await page.evaluate("document.getElementById('requests').dataset.value")
    assert requests == str(30 + 24 + 16 + 4)
