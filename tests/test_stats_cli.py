"""`genai-api stats`: the savings table of a server, read through its HTTP API."""

from __future__ import annotations

import io
import subprocess
import sys

from rich.console import Console

from genai_api.stats_cli import show_stats
from tests.conftest import CHAT, make_settings, running

ADMIN = "stats-admin"


async def test_table_shows_each_model_and_the_exact_totals() -> None:
    auth = {"Authorization": f"Bearer {ADMIN}"}
    console = Console(record=True, width=200, file=io.StringIO())
    async with running(make_settings(provider="mock", admin_api_key=ADMIN)) as gw:
        for _ in range(3):
            (await gw.http.post("/v1/chat/completions", json=CHAT)).raise_for_status()
        await gw.http.post(
            "/v1/completions", json={"model": "gpt-3.5-turbo-instruct", "prompt": "hi"}
        )
        stats = (await gw.http.get("/v1/cache/stats", headers=auth)).json()
        assert await show_stats("http://gw", ADMIN, client=gw.http, console=console) == 0
    out = console.export_text()
    lines = {line.split("│")[1].strip(): line for line in out.splitlines() if "│" in line}
    assert set(lines) == {"gpt-4o-mini", "gpt-3.5-turbo-instruct", "total"}
    mini = [cell.strip() for cell in lines["gpt-4o-mini"].split("│")[1:-1]]
    assert mini[1:6] == ["2", "0", "1", "0", "0"]  # hits, coalesced, misses, bypassed, errors
    assert mini[6] == "66.7%"
    total = [cell.strip() for cell in lines["total"].split("│")[1:-1]]
    assert total[8:] == [f"${stats['cost_saved_usd']}", f"${stats['cost_spent_usd']}"]
    assert f"since {stats['since']}" in out
    assert "last hour: 4 requests, 50.0% from cache" in out


async def test_wrong_admin_key_is_reported() -> None:
    console = Console(record=True, width=200, file=io.StringIO())
    async with running(make_settings(provider="mock", admin_api_key=ADMIN)) as gw:
        assert await show_stats("http://gw", "wrong", client=gw.http, console=console) == 1
    assert "answered 401" in console.export_text()


def test_command_reports_an_unreachable_server() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "genai_api", "stats", "--url", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "cannot reach http://127.0.0.1:9" in done.stdout
