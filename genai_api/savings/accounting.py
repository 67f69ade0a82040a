"""The savings recorder: what the cache did and saved, exact, shared, and off the hot path.

The pipeline calls `record` once per answer (and embeddings once per batch with `count`).
`record` only adds integers to an in-memory `Batch`; a background task hands the batch to
the backend (`stats_backends`: this process's memory, or Redis shared by every replica)
every `flush_interval` seconds and once more at shutdown. So a hit never waits on Redis for
its accounting, and an accounting failure never fails a request: it is logged and counted,
and the batch is retried, exactly once in effect (see `flush`).

`snapshot` produces the `/v1/cache/stats` document of CONTRACT §3 (after flushing this
process's pending increments, so a client reads its own writes), optionally with a time
series of per-minute or per-hour buckets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from redis.exceptions import RedisClusterException, RedisError

from genai_api.errors import CacheUnavailable
from genai_api.models.table import OTHER, bounded_label
from genai_api.savings.backends import INTERVALS, Batch, MemoryStats, StatsBackend
from genai_api.savings.money import dollars, to_pico

log = logging.getLogger("genai_api.accounting")

_BACKEND_FAILURES = (RedisError, RedisClusterException, OSError, TimeoutError)
FLUSH_TIMEOUT = 5.0  # seconds for one batch to reach the stats backend (kept and retried)


class CacheStatus(StrEnum):
    HIT = "HIT"
    MISS = "MISS"
    COALESCED = "COALESCED"
    BYPASS = "BYPASS"
    SEMANTIC_HIT = "SEMANTIC-HIT"  # answered with a similar prompt's entry (opt-in per model)


_COUNTER = {
    CacheStatus.HIT: "hits",
    CacheStatus.MISS: "misses",
    CacheStatus.COALESCED: "coalesced",
    CacheStatus.BYPASS: "bypassed",
    CacheStatus.SEMANTIC_HIT: "semantic_hits",
}
SAVED = (CacheStatus.HIT, CacheStatus.COALESCED, CacheStatus.SEMANTIC_HIT)
# What a semantic hit saved is counted apart from what exact hits saved: a semantic hit's
# answer was written for another prompt, and the stats never mix the two.
_SAVED_AS = {
    CacheStatus.SEMANTIC_HIT: ("semantic_saved_prompt", "semantic_saved_completion",
                               "semantic_saved_pusd"),
}  # fmt: skip
_SAVED_EXACT = ("saved_prompt", "saved_completion", "saved_pusd")
# Distinct (status, tokens, cost, count) whose counters `record` remembers: a model's hits
# repeat a few answers (its cost in pico-dollars takes Decimal arithmetic); bounded, as a
# client can vary its tokens. The memo starts over when full.
COUNTS_REMEMBERED = 4096


class Meter(Protocol):
    """The Prometheus side (`genai_api.metrics.Metrics`), told about the same events."""

    def account(
        self, model: str, status: CacheStatus, prompt: int, completion: int, cost: Decimal
    ) -> None: ...

    def backend_error(self, component: str) -> None: ...

    def provider_error(self, endpoint: str, model: str, reason: str) -> None: ...

    def flush(self) -> None: ...


def counters_doc(c: Counter[str]) -> dict[str, Any]:
    """One set of CONTRACT §3 counters (the totals, a model, or a time bucket)."""
    answered = c["hits"] + c["coalesced"]
    total = answered + c["misses"] + c["bypassed"] + c["semantic_hits"]
    return {
        "hits": c["hits"],
        "misses": c["misses"],
        "coalesced": c["coalesced"],
        "bypassed": c["bypassed"],
        "errors": c["errors"],
        "provider_errors": c["provider_errors"],
        "hit_ratio": round(answered / total, 6) if total else 0.0,
        "tokens_saved": {
            "prompt": c["saved_prompt"],
            "completion": c["saved_completion"],
            "total": c["saved_prompt"] + c["saved_completion"],
        },
        "cost_saved_usd": dollars(c["saved_pusd"]),  # exact; written as a JSON number
        "cost_spent_usd": dollars(c["spent_pusd"]),
        # Opt-in semantic hits (models with `semantic`), never mixed into the figures above:
        # hit_ratio is exact hits only, over every request.
        "semantic_hits": c["semantic_hits"],
        "semantic_hit_ratio": round(c["semantic_hits"] / total, 6) if total else 0.0,
        "semantic_tokens_saved": {
            "prompt": c["semantic_saved_prompt"],
            "completion": c["semantic_saved_completion"],
            "total": c["semantic_saved_prompt"] + c["semantic_saved_completion"],
        },
        "semantic_cost_saved_usd": dollars(c["semantic_saved_pusd"]),
    }


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class Accounting:
    def __init__(
        self,
        backend: StatsBackend | None = None,
        *,
        meter: Meter | None = None,
        clock: Callable[[], float] = time.time,
        flush_interval: float = 0.5,
        models: Iterable[str] | None = None,
    ) -> None:
        self.backend: StatsBackend = backend or MemoryStats()
        # Given the table's models, other names count under `other` (see bounded_label).
        self.models = None if models is None else frozenset(models)
        self.meter = meter
        self.clock = clock
        self.flush_interval = flush_interval
        self.started = clock()
        self.flush_failures = 0
        self._pending = Batch()
        self._unsent: Batch | None = None
        self._seq = 0
        self._failing = False
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._counts: dict[tuple[CacheStatus, int, int, Decimal, int], dict[str, int]] = {}

    def record(
        self,
        model: str,
        status: CacheStatus,
        *,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cost: Decimal = Decimal(0),
        count: int = 1,
    ) -> None:
        """Count `count` answers; tokens and cost are saved on HIT/COALESCED, spent otherwise."""
        key = (status, prompt_tokens, completion_tokens, cost, count)
        counts = self._counts.get(key)
        if counts is None:
            counts = _counts(status, prompt_tokens, completion_tokens, cost, count)
            if len(self._counts) >= COUNTS_REMEMBERED:
                self._counts.clear()
            self._counts[key] = counts
        model = self._label(model)
        self._pending.add(model, counts, self.clock())
        if self.meter is not None:
            self.meter.account(model, status, prompt_tokens, completion_tokens, cost)

    def _label(self, model: str) -> str:
        return model if self.models is None else bounded_label(self.models, model)

    def record_error(self, model: str | None = None) -> None:
        """A cache backend error (the request itself went on)."""
        self._pending.add(model and self._label(model), {"errors": 1}, self.clock())
        if self.meter is not None:
            self.meter.backend_error("cache")

    def record_provider_error(self, endpoint: str, model: object, reason: str) -> None:
        """A provider call that failed (`reason`: error, timeout, unreachable, cut)."""
        label = self._label(model) if isinstance(model, str) else OTHER
        self._pending.add(label, {"provider_errors": 1}, self.clock())
        if self.meter is not None:
            self.meter.provider_error(endpoint, label, reason)

    def start(self) -> None:
        """Start the background flush (inside the running loop: the app's lifespan)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._flush_forever())

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            try:
                await self.flush()
            except Exception:  # the outermost boundary of a background task: never die
                log.exception("stats flush failed")

    async def flush(self) -> bool:
        """Hand pending increments to the backend; False when it failed (they are kept).

        A batch that failed is retried as it was, with its sequence number, before anything
        newer: the Redis backend applies each (writer, seq) at most once, so a batch whose
        failed attempt did reach Redis is not counted twice. With nothing pending, an empty
        batch under the last sequence number goes anyway (it applies nothing; see below).
        """
        if self.meter is not None:
            self.meter.flush()
        async with self._lock:
            if self._unsent is not None:
                if not await self._apply(self._unsent):
                    return False
                self._unsent = None
            if not self._pending:
                # Nothing to add, but the Redis backend still touches the counters (so LRU
                # or LFU eviction passes them by) and restores any it finds evicted from
                # what this process saw last: an idle process's view counts too.
                return await self._apply(Batch(seq=self._seq))
            batch, self._pending = self._pending, Batch()
            self._seq += 1
            batch.seq = self._seq
            if not await self._apply(batch):
                self._unsent = batch
                return False
            return True

    async def _apply(self, batch: Batch) -> bool:
        try:
            # Bounded: the store's client has no socket timeout, and a Redis that hangs
            # without closing the socket must not stop the flushes (and the metrics) for good.
            async with asyncio.timeout(FLUSH_TIMEOUT):
                await self.backend.apply(batch, self.clock())
        except _BACKEND_FAILURES as exc:
            self.flush_failures += 1
            if self.meter is not None:
                self.meter.backend_error("stats")
            if not self._failing:  # one line per outage, not one per flush
                log.warning("stats backend %s failed, will retry: %s", self.backend.name, exc)
            self._failing = True
            return False
        if self._failing:
            log.info("stats backend %s is back; pending counts written", self.backend.name)
            self._failing = False
        return True

    async def aclose(self) -> None:
        """Stop the background flush and flush what is left (best effort)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def snapshot(
        self, series: str | None = None, points: int | None = None
    ) -> dict[str, Any]:
        """The `/v1/cache/stats` document; `series` adds `minute` or `hour` buckets.

        Counts this process could not write yet (the backend refuses writes, e.g. a Redis
        replica during a failover) are added to what the backend reports, so a process
        always sees its own counts.
        """
        await self.flush()
        unflushed = Batch()
        for batch in (self._unsent, self._pending):
            for key, cell in batch.cells.items() if batch is not None else ():
                unflushed.add(key[0], cell, key[1])
        try:
            totals = await self.backend.read()
            totals.totals.update(unflushed.totals)
            for model, counts in unflushed.models.items():
                totals.models.setdefault(model, Counter()).update(counts)
            doc: dict[str, Any] = {"since": _iso(totals.since or self.started)}
            doc.update(counters_doc(totals.totals))
            doc["by_model"] = {m: counters_doc(c) for m, c in sorted(totals.models.items())}
            if series is not None:
                doc["series"] = await self._series(series, points, unflushed)
        except _BACKEND_FAILURES as exc:
            raise CacheUnavailable(f"stats backend {self.backend.name}: {exc}") from exc
        return doc

    async def _series(self, name: str, points: int | None, unflushed: Batch) -> dict[str, Any]:
        interval = INTERVALS[name]
        n = min(points or interval.keep, interval.keep)
        last = interval.start(self.clock())
        starts = [last - i * interval.seconds for i in range(n - 1, -1, -1)]
        buckets = await self.backend.read_series(interval, starts)
        local = unflushed.buckets[name]
        for start, counts in zip(starts, buckets, strict=True):
            counts.update(local.get(start, {}))
        return {
            "interval": interval.name,
            "seconds": interval.seconds,
            "points": [{"t": s, **counters_doc(c)} for s, c in zip(starts, buckets, strict=True)],
        }


def _counts(
    status: CacheStatus, prompt_tokens: int, completion_tokens: int, cost: Decimal, count: int
) -> dict[str, int]:
    """The counters `count` answers add (zeros left out). Shared by every `record` with the
    same figures: read, never changed (`Batch.add` adds it into its own cells)."""
    counts = {_COUNTER[status]: count}
    if status in SAVED:
        prompt, completion, pusd = _SAVED_AS.get(status, _SAVED_EXACT)
        counts[prompt] = prompt_tokens
        counts[completion] = completion_tokens
        counts[pusd] = to_pico(cost)
    else:
        counts["spent_pusd"] = to_pico(cost)
    return {k: v for k, v in counts.items() if v}
