"""`genai-api stats`: the savings table of a running server, printed with rich.

One row per model and a total row, from `/v1/cache/stats` (CONTRACT §3), plus a caption
summing the last hour of per-minute buckets. Dollars are read as exact decimals (JSON numbers
parsed as `Decimal`, never through a float; an older server's strings read the same) and
printed with every digit the server sent.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import httpx
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from genai_api.savings.money import plain

COLUMNS = (
    "model",
    "hits",
    "coalesced",
    "misses",
    "bypassed",
    "errors",
    "provider errors",
    "hit ratio",
    "tokens saved",
    "USD saved",
    "USD spent",
    "semantic hits",  # last: the exact columns keep their places
)


def _last_hour(stats: dict[str, Any]) -> str | None:
    points = (stats.get("series") or {}).get("points")
    if not points:
        return None
    cached = sum(p["hits"] + p["coalesced"] for p in points)
    total = cached + sum(p["misses"] + p["bypassed"] + p.get("semantic_hits", 0) for p in points)
    saved = sum((_decimal(p["cost_saved_usd"]) for p in points), Decimal(0))
    ratio = f"{cached / total:.1%}" if total else "-"
    return f"last hour: {total:,} requests, {ratio} from cache, ${plain(saved)} saved"


def _decimal(value: object) -> Decimal:
    return Decimal(str(value))  # a Decimal, an int, or an older server's string


def _usd(value: object) -> str:
    return f"${plain(_decimal(value))}"


def _semantic(c: dict[str, Any]) -> str:
    """Semantic hits and what they saved, apart from the exact figures (a server without
    them, older than this client, shows a dash)."""
    if "semantic_hits" not in c:
        return "-"
    if not c["semantic_hits"]:
        return "0"
    return f"{c['semantic_hits']:,} (${c['semantic_cost_saved_usd']})"


def stats_table(stats: dict[str, Any]) -> Table:
    table = Table(
        title=f"genai-api cache savings since {stats.get('since', '?')}",
        caption=_last_hour(stats),
    )
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "model" else "right")

    def row(name: str, c: dict[str, Any], style: str | None = None) -> None:
        table.add_row(
            name,
            f"{c['hits']:,}",
            f"{c['coalesced']:,}",
            f"{c['misses']:,}",
            f"{c['bypassed']:,}",
            f"{c['errors']:,}",
            f"{c.get('provider_errors', 0):,}",  # an older server has none
            f"{float(c['hit_ratio']):.1%}",
            f"{c['tokens_saved']['total']:,}",
            _usd(c["cost_saved_usd"]),
            _usd(c["cost_spent_usd"]),
            _semantic(c),
            style=style,
        )

    for model, counters in sorted(stats.get("by_model", {}).items()):
        row(model, counters)
    row("total", stats, style="bold")
    return table


def print_whole(console: Console, table: Table) -> None:
    """Print `table` at its natural width: piped output (80 columns) or a narrow terminal
    would otherwise shorten model names and costs to `gpt-…` and `$0.0…`."""
    unbounded = console.options.update_width(10_000)  # a measure is capped at the width given
    console.width = max(console.width, Measurement.get(console, unbounded, table).maximum)
    console.print(table)


async def show_stats(
    url: str,
    key: str | None,
    *,
    client: httpx.AsyncClient | None = None,
    console: Console | None = None,
    errors: Console | None = None,
) -> int:
    """Fetch and print; 1 (with a one-line reason on `errors`, stderr) when the server
    cannot be read."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    console = console or Console()
    errors = errors or Console(stderr=True)
    target = url.rstrip("/") + "/v1/cache/stats?series=minute&points=60"
    try:
        if client is None:
            async with httpx.AsyncClient(timeout=10) as own:
                response = await own.get(target, headers=headers)
        else:
            response = await client.get(target, headers=headers)
    except httpx.HTTPError as exc:
        errors.print(f"[red]cannot reach {url}: {exc}[/red]")
        return 1
    if response.status_code != 200:
        errors.print(f"[red]{url} answered {response.status_code}: {response.text[:300]}[/red]")
        return 1
    print_whole(console, stats_table(json.loads(response.content, parse_float=Decimal)))
    return 0


def print_stats(url: str, key: str | None) -> int:
    """The `genai-api stats` command."""
    return asyncio.run(show_stats(url, key))
