"""Where the savings counters live: this process's memory, or Redis shared by every replica.

Every counter is an integer (`money` explains why cost is in pico-dollars), so backends
only ever add integers: exact in memory, atomic across replicas in Redis (`HINCRBY`).
The recorder (`genai_api.accounting`) batches increments in memory and hands a `Batch`
to `apply` every half second; `read` and `read_series` serve `/v1/cache/stats`.

Redis layout (`{ns}` = `CACHE_NAMESPACE`)::

    {ns}:stats:total                    hash  counters + `since` (unix s of the first write)
    {ns}:stats:models                   set   model names that have a hash
    {ns}:stats:model:{model}            hash  counters of one model
    {ns}:stats:minute:{unix s}          hash  counters of one minute, expire after a day
    {ns}:stats:hour:{unix s}            hash  counters of one hour, expire after 30 days
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis.asyncio as aioredis

FIELDS = (
    "hits",
    "misses",
    "coalesced",
    "bypassed",
    "errors",
    "saved_prompt",
    "saved_completion",
    "saved_pusd",
    "spent_pusd",
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


def _counter() -> Counter[str]:
    return Counter()


@dataclass
class Batch:
    """Increments not yet applied: totals, per model, per time bucket."""

    totals: Counter[str] = field(default_factory=Counter)
    models: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(_counter))
    buckets: dict[str, defaultdict[int, Counter[str]]] = field(
        default_factory=lambda: {name: defaultdict(_counter) for name in INTERVALS}
    )

    def add(self, model: str | None, counts: dict[str, int], now: float) -> None:
        self.totals.update(counts)
        if model is not None:
            self.models[model].update(counts)
        for name, interval in INTERVALS.items():
            self.buckets[name][interval.start(now)].update(counts)

    def merge(self, other: Batch) -> None:
        """Add `other` into this batch (a failed flush goes back into the pending one)."""
        self.totals.update(other.totals)
        for model, counts in other.models.items():
            self.models[model].update(counts)
        for name, buckets in other.buckets.items():
            for start, counts in buckets.items():
                self.buckets[name][start].update(counts)

    def __bool__(self) -> bool:
        return bool(self.totals)


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
        self.models: defaultdict[str, Counter[str]] = defaultdict(_counter)
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


def _ints(raw: dict[Any, Any]) -> Counter[str]:
    out: Counter[str] = Counter()
    for key, value in raw.items():
        name = key.decode() if isinstance(key, bytes) else str(key)
        if name in FIELDS:
            out[name] = int(value)
    return out


class RedisStats:
    """Counters shared by every replica: `HINCRBY` in one MULTI/EXEC per flush."""

    name = "redis"

    def __init__(self, client: aioredis.Redis, namespace: str) -> None:
        self.client = client
        self.prefix = f"{namespace}:stats"

    def _bucket_key(self, interval: Interval, start: int) -> str:
        return f"{self.prefix}:{interval.name}:{start}"

    async def apply(self, batch: Batch, now: float) -> None:
        total_key, models_key = f"{self.prefix}:total", f"{self.prefix}:models"
        async with self.client.pipeline(transaction=True) as pipe:
            for name, n in batch.totals.items():
                pipe.hincrby(total_key, name, n)
            pipe.hsetnx(total_key, "since", int(now))
            if batch.models:
                pipe.sadd(models_key, *batch.models)
            for model, counts in batch.models.items():
                for name, n in counts.items():
                    pipe.hincrby(f"{self.prefix}:model:{model}", name, n)
            for interval_name, buckets in batch.buckets.items():
                interval = INTERVALS[interval_name]
                for start, counts in buckets.items():
                    key = self._bucket_key(interval, start)
                    for name, n in counts.items():
                        pipe.hincrby(key, name, n)
                    # Expire a fixed time after the bucket ends, however often it is written.
                    pipe.expireat(key, start + interval.seconds + interval.window)
            await pipe.execute()

    async def read(self) -> Totals:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(f"{self.prefix}:total")
            pipe.smembers(f"{self.prefix}:models")
            total, members = await pipe.execute()
        models = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
        per_model: dict[str, Counter[str]] = {}
        if models:
            async with self.client.pipeline(transaction=False) as pipe:
                for model in models:
                    pipe.hgetall(f"{self.prefix}:model:{model}")
                per_model = {
                    m: _ints(raw) for m, raw in zip(models, await pipe.execute(), strict=True)
                }
        since = total.get(b"since") or total.get("since")
        return Totals(float(since) if since else None, _ints(total), per_model)

    async def read_series(self, interval: Interval, starts: list[int]) -> list[Counter[str]]:
        async with self.client.pipeline(transaction=False) as pipe:
            for start in starts:
                pipe.hgetall(self._bucket_key(interval, start))
            return [_ints(raw) for raw in await pipe.execute()]


def now() -> float:
    """The default clock (a seam: tests pass their own)."""
    return time.time()
