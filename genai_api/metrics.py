"""Prometheus metrics for `GET /metrics`, safe with several worker processes.

Built once per app in the lifespan (a registry of its own, so tests can build many apps).
With `genai-api serve --workers N` the serve command points `PROMETHEUS_MULTIPROC_DIR` at a
fresh directory before any worker starts; prometheus-client then keeps each worker's values
in files there, and a scrape (answered by any one worker) adds them all up.

Label values are bounded so a client cannot blow up the series count: `endpoint` is one of
six names (every relayed route is `passthrough`, never its path), `model` is a model of the
models table or `other`, `cache` one of five values, `upstream` one of the upstreams the
models file names (`genai_api.providers.upstreams`), `reason` (provider errors) one of four.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from genai_api.apis import GENERATING
from genai_api.models.table import bounded_label
from genai_api.savings.accounting import SAVED, CacheStatus

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)
# Each generating API and embeddings, at its path with and without `/v1`.
_PATH_ENDPOINTS = {
    prefix + path: name
    for path, name in [*((api.path, api.name) for api in GENERATING), ("/embeddings", "embeddings")]
    for prefix in ("/v1", "")
}
M = TypeVar("M", Counter, Gauge, Histogram)
_BUCKET = {status: "saved" for status in SAVED} | {CacheStatus.SEMANTIC_HIT: "semantic"}
_CACHE_RESULTS = {
    "HIT": "hit",
    "MISS": "miss",
    "COALESCED": "coalesced",
    "BYPASS": "bypass",
    "SEMANTIC-HIT": "semantic_hit",
}
_REQUEST_SERIES = 4096


def is_multiprocess() -> bool:
    """True when prometheus-client writes values to PROMETHEUS_MULTIPROC_DIR (chosen at import)."""
    return values.ValueClass is not values.MutexValue


def endpoint_of(path: str) -> str | None:
    """The endpoint label of a request path, or None for paths that are not counted."""
    if path.startswith("/v1/prompts/") and path.endswith("/completions"):
        return "prompts"
    return _PATH_ENDPOINTS.get(path)


class Metrics:
    def __init__(self, models: Iterable[str]) -> None:
        self.models = frozenset(models)
        self.multiprocess = is_multiprocess()
        # In multiprocess mode values live in files and are collected from there, not here.
        reg = None if self.multiprocess else CollectorRegistry(auto_describe=True)
        self.registry = reg
        self.requests = Counter(
            "genai_requests",
            "Requests to the completion endpoints and the pass-through by endpoint, model, cache "
            "result and status.",
            ["endpoint", "model", "cache", "status"],
            registry=reg,
        )
        self.tokens_saved = Counter(
            "genai_cache_tokens_saved",
            "Tokens answered from the cache (HIT, COALESCED) instead of the provider.",
            ["model", "kind"],
            registry=reg,
        )
        self.semantic_tokens_saved = Counter(
            "genai_semantic_cache_tokens_saved",
            "Tokens answered by semantic hits (opt-in per model), not counted as cache hits.",
            ["model", "kind"],
            registry=reg,
        )
        self.semantic_cost_saved = Counter(
            "genai_semantic_cache_cost_saved_usd",
            "USD the provider would have charged for answers served by semantic hits.",
            ["model"],
            registry=reg,
        )
        self.tokens_spent = Counter(
            "genai_provider_tokens",
            "Tokens the provider was paid for (MISS, BYPASS).",
            ["model", "kind"],
            registry=reg,
        )
        self.cost_saved = Counter(
            "genai_cache_cost_saved_usd",
            "USD the provider would have charged for answers served from the cache.",
            ["model"],
            registry=reg,
        )
        self.cost_spent = Counter(
            "genai_provider_cost_usd",
            "USD charged by the provider for calls the gateway made.",
            ["model"],
            registry=reg,
        )
        self.provider_latency = Histogram(
            "genai_provider_request_duration_seconds",
            "Provider call latency (a stream: until its last chunk), by upstream; its count "
            "with outcome=error is the failed calls.",
            ["endpoint", "model", "upstream", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.provider_errors = Counter(
            "genai_provider_errors",
            "Provider calls that failed, by reason: error (an error status or event from the "
            "provider, or an answer that is not one), timeout, unreachable, cut (a stream or "
            "answer that ended before it finished).",
            ["endpoint", "model", "reason"],
            registry=reg,
        )
        self.in_flight = Gauge(
            "genai_provider_in_flight",
            "Provider calls in flight, by upstream.",
            ["upstream"],
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.fallbacks = Counter(
            "genai_provider_fallbacks",
            "Requests whose model's upstream failed and that tried a fallback model.",
            ["model", "fallback"],
            registry=reg,
        )
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        # The request counter's series by what a request gives (endpoint, model, X-Cache,
        # status): one lookup per answer. Bounded as the labels are, plus the client-sent
        # model names folded into `other` (the memo starts over past `_REQUEST_SERIES`).
        self._request_series: dict[tuple[str, object, str | None, int], Counter] = {}
        self._pending: dict[tuple[str, str, str], int | Decimal] = {}
        self.backend_errors = Counter(
            "genai_cache_backend_errors",
            "Cache backend failures (component=cache: lookups and writes; stats: counters).",
            ["component"],
            registry=reg,
        )
        self.refused_writes = Counter(
            "genai_cache_refused_writes",
            "Cache writes (entries, leases) a full Redis refused (OOM at maxmemory), among the "
            "cache backend errors: their answers were BYPASS, and unlike other failures they "
            "opened no breaker (hits went on).",
            registry=reg,
        )

    def model_label(self, model: object) -> str:
        return bounded_label(self.models, model)

    def _series(self, metric: M, *labels: str) -> M:
        """`metric.labels(*labels)`, remembered: prometheus-client validates the values and
        takes a lock on every `labels()` call, four of them per cache hit. The label values
        are bounded (see the module docstring), so the memo is too."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        result: M = child
        return result

    def request(self, endpoint: str, model: object, cache: str | None, status: int) -> None:
        key = (endpoint, model, cache, status)
        series = self._request_series.get(key)
        if series is None:
            result = _CACHE_RESULTS.get(cache or "", "none")
            label = self.model_label(model)
            series = self._series(self.requests, endpoint, label, result, str(status))
            if len(self._request_series) >= _REQUEST_SERIES:
                self._request_series.clear()
            self._request_series[key] = series
        series.inc()

    def account(
        self, model: str, status: CacheStatus, prompt: int, completion: int, cost: Decimal
    ) -> None:
        """Tokens and cost, added up here and handed to prometheus-client by `flush()`.

        Each `inc()` takes a lock (and, with several workers, writes a memory-mapped file):
        three of them cost a cache hit more than its accounting otherwise does. The sums are
        flushed with the stats (every half second) and before this process renders a scrape,
        so a scrape answered by another worker sees this one's tokens at most that late.
        """
        label = self.model_label(model)
        saved = _BUCKET.get(status, "spent")
        pending = self._pending
        if prompt:
            key = (saved, label, "prompt")
            pending[key] = pending.get(key, 0) + prompt
        if completion:
            key = (saved, label, "completion")
            pending[key] = pending.get(key, 0) + completion
        if cost:
            key = (saved, label, "")
            pending[key] = pending.get(key, 0) + cost

    def flush(self) -> None:
        """Apply the sums `account()` gathered."""
        pending, self._pending = self._pending, {}
        tokens_of = {
            "saved": self.tokens_saved,
            "semantic": self.semantic_tokens_saved,
            "spent": self.tokens_spent,
        }
        cost_of = {
            "saved": self.cost_saved,
            "semantic": self.semantic_cost_saved,
            "spent": self.cost_spent,
        }
        for (bucket, label, kind), amount in pending.items():
            if kind:
                self._series(tokens_of[bucket], label, kind).inc(float(amount))
            else:
                self._series(cost_of[bucket], label).inc(float(amount))

    def backend_error(self, component: str) -> None:
        self.backend_errors.labels(component).inc()

    def refused_write(self) -> None:
        self.refused_writes.inc()

    def provider_error(self, endpoint: str, model: str, reason: str) -> None:
        self._series(self.provider_errors, endpoint, self.model_label(model), reason).inc()

    @contextmanager
    def provider_call(self, endpoint: str, model: object, upstream: str) -> Iterator[None]:
        """Time one provider call and count it in flight while it runs (`upstream` is the
        upstream's name from the models file, a bounded label)."""
        in_flight = self._series(self.in_flight, upstream)
        in_flight.inc()
        start = time.perf_counter()
        outcome = "error"
        try:
            yield
            outcome = "ok"
        finally:
            in_flight.dec()
            label = self.model_label(model)
            self._series(self.provider_latency, endpoint, label, upstream, outcome).observe(
                time.perf_counter() - start
            )

    def fallback(self, model: str, fallback: str) -> None:
        self.fallbacks.labels(self.model_label(model), self.model_label(fallback)).inc()

    def render(self) -> tuple[bytes, str]:
        """The text exposition: this app's registry, or every worker's files."""
        self.flush()
        if self.registry is not None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """A worker that stops drops its live gauges from the shared directory."""
        self.flush()
        if self.multiprocess:
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
