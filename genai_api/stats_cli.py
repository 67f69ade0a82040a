"""`genai-api stats`: the savings table of a running server, printed with rich."""

from __future__ import annotations

from typing import Any

import httpx
from rich.console import Console
from rich.table import Table


def stats_table(stats: dict[str, Any]) -> Table:
    table = Table(title=f"genai-api cache savings since {stats.get('since', '?')}")
    for column in (
        "model",
        "hits",
        "coalesced",
        "misses",
        "bypassed",
        "errors",
        "hit ratio",
        "tokens saved",
        "USD saved",
        "USD spent",
    ):
        table.add_column(column, justify="left" if column == "model" else "right")

    def row(name: str, c: dict[str, Any], style: str | None = None) -> None:
        table.add_row(
            name,
            str(c["hits"]),
            str(c["coalesced"]),
            str(c["misses"]),
            str(c["bypassed"]),
            str(c["errors"]),
            f"{float(c['hit_ratio']):.1%}",
            f"{c['tokens_saved']['total']:,}",
            f"${c['cost_saved_usd']}",
            f"${c['cost_spent_usd']}",
            style=style,
        )

    for model, counters in sorted(stats.get("by_model", {}).items()):
        row(model, counters)
    row("total", stats, style="bold")
    return table


def print_stats(url: str, admin_key: str | None) -> int:
    headers = {"Authorization": f"Bearer {admin_key}"} if admin_key else {}
    console = Console()
    try:
        response = httpx.get(url.rstrip("/") + "/v1/cache/stats", headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        console.print(f"[red]cannot reach {url}: {exc}[/red]")
        return 1
    if response.status_code != 200:
        console.print(f"[red]{url} answered {response.status_code}: {response.text[:300]}[/red]")
        return 1
    console.print(stats_table(response.json()))
    return 0
