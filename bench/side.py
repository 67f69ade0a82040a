"""Side-by-side rounds: targets measured in alternating order, reported as medians and ratios.

On a shared 2-core machine the absolute figures drift with whatever else runs; a target
and its reference measured back to back in the same round drift together. So each ratio is
the median over rounds of the per-round ratio, and the order flips every round so neither
target always runs first (warm caches, a neighbour's test starting).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import wrk
from bench.procs import Process


@dataclass
class Target:
    label: str
    server: Process
    url: str
    load: wrk.Load


@dataclass
class Comparison:
    """Every sample of every target, and the medians the table shows."""

    name: str
    reference: str
    connections: int
    samples: dict[str, list[wrk.Sample]] = field(default_factory=dict)

    def median(self, label: str, metric: str) -> float:
        return statistics.median(getattr(s, metric) for s in self.samples[label])

    def ratio(self, label: str, metric: str = "rps") -> float:
        """Median over rounds of target / reference for `metric` (paired in each round)."""
        pairs = zip(self.samples[label], self.samples[self.reference], strict=True)
        return statistics.median(
            getattr(a, metric) / getattr(b, metric) if getattr(b, metric) else 0.0 for a, b in pairs
        )

    def errors(self, label: str) -> int:
        return sum(s.errors for s in self.samples[label])

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "reference": self.reference,
            "connections": self.connections,
            "samples": {k: [s.as_dict() for s in v] for k, v in self.samples.items()},
            "medians": {
                label: {
                    m: self.median(label, m) for m in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req")
                }
                for label in self.samples
            },
        }


def compare(
    name: str,
    targets: Sequence[Target],
    *,
    connections: int,
    rounds: int,
    seconds: float,
    core: str | None,
    workdir: Path,
    warmup: float = 1.0,
) -> Comparison:
    """`rounds` alternated wrk runs per target; the first target is the reference."""
    result = Comparison(name, targets[0].label, connections, {t.label: [] for t in targets})
    for target in targets:
        wrk.run(
            target.label,
            target.server,
            target.url,
            target.load,
            connections=connections,
            seconds=warmup,
            core=core,
            workdir=workdir,
        )
    for round_no in range(rounds):
        order = targets if round_no % 2 == 0 else list(reversed(targets))
        for target in order:
            sample = wrk.run(
                target.label,
                target.server,
                target.url,
                target.load,
                connections=connections,
                seconds=seconds,
                core=core,
                workdir=workdir,
            )
            result.samples[target.label].append(sample)
        line = "  ".join(
            f"{t.label} {result.samples[t.label][-1].rps:,.0f}/s "
            f"{result.samples[t.label][-1].cpu_us_per_req:.0f}us"
            for t in targets
        )
        print(f"    round {round_no + 1}/{rounds}: {line}", flush=True)
    return result
