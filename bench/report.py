"""The table `make bench` prints (and the README's performance section copies)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.scenarios import Bar
from bench.side import Comparison


def _verdict(bar: Bar) -> str:
    return {True: "PASS", False: "FAIL", None: "----"}[bar.ok]


def settings_line(config: dict[str, Any]) -> str:
    """What the gateway under test runs with, as a user would set it."""
    variants = ", ".join(config.get("hit_variants") or []) or "none"
    return (
        f"gateway: LOG_LEVEL={config['log_level']} LOG_FORMAT={config['log_format']}, "
        f"metrics on, L1 on, Redis cache, 1 worker; also in the chat hits' rounds: {variants}"
    )


def table_lines(
    machine: dict[str, Any],
    comparisons: Sequence[Comparison],
    bars: Sequence[Bar],
    config: dict[str, Any] | None = None,
) -> list[str]:
    lines = [
        f"machine: {machine['nproc']} cores, {machine['cpu']}, Python {machine['python']}, "
        f"commit {machine['commit']}, load average {machine.get('load', '?')}",
        *([settings_line(config)] if config else []),
        "",
        "| scenario | target | req/s | p50 ms | p99 ms | CPU µs/req | req/s ratio | CPU ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for cmp in comparisons:
        for label in cmp.samples:
            ref = label == cmp.reference
            ratio = "1.00" if ref else f"{cmp.ratio(label):.2f}"
            cpu = "1.00" if ref else f"{cmp.ratio(label, 'cpu_us_per_req'):.2f}"
            lines.append(
                f"| {cmp.name} ({cmp.connections} conn) | {label} | "
                f"{cmp.median(label, 'rps'):,.0f} | {cmp.median(label, 'p50_ms'):.2f} | "
                f"{cmp.median(label, 'p99_ms'):.2f} | {cmp.median(label, 'cpu_us_per_req'):,.0f} | "
                f"{ratio} | {cpu} |"
            )
    lines += ["", "| bar | measured | needed | result | note |", "|---|---:|---|---|---|"]
    for bar in bars:
        value = "n/a" if bar.value is None else f"{bar.value:,.2f}"
        lines.append(
            f"| {bar.scenario}: {bar.what} | {value} | {bar.bound} | {_verdict(bar)} | {bar.note} |"
        )
    return lines


def print_table(
    report: dict[str, Any], comparisons: Sequence[Comparison], bars: Sequence[Bar]
) -> None:
    print()
    print("\n".join(table_lines(report["machine"], comparisons, bars, report.get("config"))))
    failed = [b for b in bars if b.ok is False]
    print()
    print(
        f"{len(bars) - len(failed)} of {len(bars)} bars met or pending, {len(failed)} missed "
        f"({report.get('elapsed_s', 0):.0f} s; load average at the end "
        f"{report.get('load_end', '?')})"
    )
