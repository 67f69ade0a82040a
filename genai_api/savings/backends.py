"""Where the savings counters live: this process's memory, or Redis shared by every replica.

Every counter is an integer (`money` explains why cost is in pico-dollars), so backends
only ever add integers: exact in memory, atomic across replicas in Redis (`HINCRBY`).
The recorder (`genai_api.savings.accounting`) batches increments in memory and hands a `Batch`
to `apply` every half second; `read` and `read_series` serve `/v1/cache/stats`.

`MemoryStats` is here; `RedisStats` (shared by every replica) is in `savings.redis`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Protocol

FIELDS = (
    "hits",
    "misses",
    "coalesced",
    "bypassed",
    "errors",
    "provider_errors",
    "saved_prompt",
    "saved_completion",
    "saved_pusd",
    "spent_pusd",
    "semantic_hits",
    "semantic_saved_prompt",
    "semantic_saved_completion",
    "semantic_saved_pusd",
)


@dataclass(frozen=True, slots=True)
class Interval:
    """A time-bucket resolution: bucket width and how many buckets are kept."""

    name: str
    seconds: int
    keep: int

    @property
    def window(self) -> int:
        return self.seconds * self.keep

    def start(self, t: float) -> int:
        """The start (unix s) of the bucket holding `t`."""
        return int(t) // self.seconds * self.seconds


MINUTE = Interval("minute", 60, 24 * 60)
HOUR = Interval("hour", 3600, 30 * 24)
INTERVALS = {i.name: i for i in (MINUTE, HOUR)}


@dataclass
class Batch:
    """Increments not yet applied, kept per (model, minute) so recording is one dict update.

    Totals, per-model counters and per-minute / per-hour buckets are all sums of these
    cells, computed once when the batch is flushed (off the hot path).
    """

    seq: int = 0  # set by the recorder when it hands the batch over: applied once per seq
    cells: dict[tuple[str | None, int], dict[str, int]] = field(default_factory=dict)

    def add(self, model: str | None, counts: dict[str, int], now: float) -> None:
        key = (model, int(now) // 60 * 60)
        cell = self.cells.get(key)
        if cell is None:
            cell = self.cells[key] = {}
        for name, n in counts.items():
            cell[name] = cell.get(name, 0) + n

    @property
    def totals(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for cell in self.cells.values():
            out.update(cell)
        return out

    @property
    def models(self) -> dict[str, Counter[str]]:
        out: dict[str, Counter[str]] = {}
        for (model, _), cell in self.cells.items():
            if model is not None:
                out.setdefault(model, Counter()).update(cell)
        return out

    @property
    def buckets(self) -> dict[str, dict[int, Counter[str]]]:
        """Per interval name, bucket start → counters."""
        out: dict[str, dict[int, Counter[str]]] = {name: {} for name in INTERVALS}
        for (_, minute), cell in self.cells.items():
            for name, interval in INTERVALS.items():
                out[name].setdefault(interval.start(minute), Counter()).update(cell)
        return out

    def __bool__(self) -> bool:
        return bool(self.cells)


@dataclass
class Totals:
    since: float | None
    totals: Counter[str]
    models: dict[str, Counter[str]]


class StatsBackend(Protocol):
    name: str

    async def apply(self, batch: Batch, now: float) -> None:
        """Add every increment of `batch`; all or nothing where the backend allows it."""
        ...

    async def read(self) -> Totals: ...

    async def read_series(self, interval: Interval, starts: list[int]) -> list[Counter[str]]:
        """The counters of each bucket in `starts` (empty counters for buckets never written)."""
        ...


class MemoryStats:
    """Per-process counters; old time buckets are dropped as new ones are written."""

    name = "memory"

    def __init__(self) -> None:
        self.totals: Counter[str] = Counter()
        self.models: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.buckets: dict[str, dict[int, Counter[str]]] = {name: {} for name in INTERVALS}

    async def apply(self, batch: Batch, now: float) -> None:
        self.totals.update(batch.totals)
        for model, counts in batch.models.items():
            self.models[model].update(counts)
        for name, buckets in batch.buckets.items():
            interval, kept = INTERVALS[name], self.buckets[name]
            for start, counts in buckets.items():
                kept.setdefault(start, Counter()).update(counts)
            oldest = interval.start(now) - interval.window
            for start in [s for s in kept if s <= oldest]:
                del kept[start]

    async def read(self) -> Totals:
        # `since` is None: the counters are this process's, since the recorder started.
        models = {m: Counter(c) for m, c in self.models.items()}
        return Totals(None, Counter(self.totals), models)

    async def read_series(self, interval: Interval, starts: list[int]) -> list[Counter[str]]:
        kept = self.buckets[interval.name]
        return [Counter(kept.get(start, {})) for start in starts]
