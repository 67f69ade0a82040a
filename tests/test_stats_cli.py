"""`genai-api stats`: the savings table of a server, read through its HTTP API."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from genai_api.commands.stats import show_stats, stats_table
from tests.conftest import CHAT, make_settings, running, stats_doc
from tests.processes import ROOT, gateway

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
        stats = stats_doc(await gw.http.get("/v1/cache/stats", headers=auth))
        assert await show_stats("http://gw", ADMIN, client=gw.http, console=console) == 0
    out = console.export_text()
    lines = {line.split("│")[1].strip(): line for line in out.splitlines() if "│" in line}
    assert set(lines) == {"gpt-4o-mini", "gpt-3.5-turbo-instruct", "total"}
    mini = [cell.strip() for cell in lines["gpt-4o-mini"].split("│")[1:-1]]
    # hits, coalesced, misses, bypassed, cache errors, provider errors
    assert mini[1:7] == ["2", "0", "1", "0", "0", "0"]
    assert mini[7] == "66.7%"
    total = [cell.strip() for cell in lines["total"].split("│")[1:-1]]
    assert total[9:] == [f"${stats['cost_saved_usd']}", f"${stats['cost_spent_usd']}", "0"]
    assert f"since {stats['since']}" in out
    assert "last hour: 4 requests, 50.0% from cache" in out


@pytest.mark.parametrize(
    ("saved", "shown"),
    [
        (Decimal("0.0000003"), "$0.0000003"),  # str() of this Decimal is 3E-7
        (Decimal("12000"), "$12000"),
        ("0.003113", "$0.003113"),  # an older server sent strings
        (0, "$0"),
    ],
)
def test_dollars_are_printed_with_every_digit_and_no_exponent(saved: Any, shown: str) -> None:
    counters = {
        "hits": 1, "coalesced": 0, "misses": 0, "bypassed": 0, "errors": 0, "hit_ratio": 1.0,
        "tokens_saved": {"prompt": 1, "completion": 0, "total": 1},
        "cost_saved_usd": saved, "cost_spent_usd": 0,
    }  # fmt: skip
    console = Console(record=True, width=300, file=io.StringIO())
    console.print(stats_table({**counters, "since": "2027-01-01T00:00:00Z", "by_model": {}}))
    total = next(line for line in console.export_text().splitlines() if "total" in line)
    cells = [cell.strip() for cell in total.split("│")[1:-1]]
    assert cells[6] == "0"  # provider errors: none from an older server
    assert cells[9:] == [shown, "$0", "-"]  # semantic hits: none from an older server


async def test_wrong_admin_key_is_reported_on_the_error_console() -> None:
    out = Console(record=True, width=200, file=io.StringIO())
    errors = Console(record=True, width=200, file=io.StringIO())
    async with running(make_settings(provider="mock", admin_api_key=ADMIN)) as gw:
        code = await show_stats("http://gw", "wrong", client=gw.http, console=out, errors=errors)
    assert code == 1
    assert "answered 401" in errors.export_text()
    assert out.export_text() == ""


async def test_piped_table_keeps_long_names_and_costs_whole() -> None:
    piped = Console(record=True, file=io.StringIO())  # not a terminal: 80 columns
    long_name = "my-org/a-rather-long-fine-tuned-model-name-v2"
    async with running(make_settings(provider="mock")) as gw:
        for _ in range(2):
            body = {**CHAT, "model": long_name}
            (await gw.http.post("/v1/chat/completions", json=body)).raise_for_status()
        (await gw.http.post("/v1/chat/completions", json=CHAT)).raise_for_status()
        stats = stats_doc(await gw.http.get("/v1/cache/stats"))
        assert await show_stats("http://gw", None, client=gw.http, console=piped) == 0
    out = piped.export_text()
    assert "…" not in out
    assert f"${stats['cost_spent_usd']}" in out
    assert "other" in out  # a model the table does not know adds up under `other`


def test_command_reports_an_unreachable_server_on_stderr() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "genai_api", "stats", "--url", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "cannot reach http://127.0.0.1:9" in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("server_env", "dotenv"),
    [
        ({"ADMIN_API_KEY": "dotenv-admin"}, "ADMIN_API_KEY=dotenv-admin\n"),
        ({"GATEWAY_API_KEYS": "client-1,client-2"}, "GATEWAY_API_KEYS=client-1,client-2\n"),
    ],
    ids=["admin-key", "client-key-without-admin-key"],
)
def test_command_reads_its_key_from_dotenv_as_the_server_does(
    tmp_path: Path, server_env: dict[str, str], dotenv: str
) -> None:
    (tmp_path / "server").mkdir()
    (tmp_path / "cli").mkdir()
    (tmp_path / "cli" / ".env").write_text(dotenv)
    server = gateway(tmp_path / "server", {"PROVIDER": "mock", **server_env})
    try:
        server.wait_ready()
        env = {
            k: v for k, v in os.environ.items() if k not in ("ADMIN_API_KEY", "GATEWAY_API_KEYS")
        }
        done = subprocess.run(
            [sys.executable, "-m", "genai_api", "stats", "--url", server.url],
            capture_output=True, text=True, timeout=60, cwd=tmp_path / "cli",
            env={**env, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    assert "cache savings since" in done.stdout
