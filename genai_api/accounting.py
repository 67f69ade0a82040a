"""Counters of what the cache did and saved, per model (in-process for now).

The pipeline calls `record` once per answered request; `snapshot` produces the
`/v1/cache/stats` document of CONTRACT §3.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any


class CacheStatus(StrEnum):
    HIT = "HIT"
    MISS = "MISS"
    COALESCED = "COALESCED"
    BYPASS = "BYPASS"


_COUNTER = {
    CacheStatus.HIT: "hits",
    CacheStatus.MISS: "misses",
    CacheStatus.COALESCED: "coalesced",
    CacheStatus.BYPASS: "bypassed",
}


@dataclass
class Counters:
    hits: int = 0
    misses: int = 0
    coalesced: int = 0
    bypassed: int = 0
    errors: int = 0
    saved_prompt: int = 0
    saved_completion: int = 0
    cost_saved: Decimal = field(default_factory=Decimal)
    cost_spent: Decimal = field(default_factory=Decimal)

    def as_dict(self) -> dict[str, Any]:
        answered = self.hits + self.coalesced
        total = answered + self.misses + self.bypassed
        return {
            "hits": self.hits,
            "misses": self.misses,
            "coalesced": self.coalesced,
            "bypassed": self.bypassed,
            "errors": self.errors,
            "hit_ratio": round(answered / total, 6) if total else 0.0,
            "tokens_saved": {
                "prompt": self.saved_prompt,
                "completion": self.saved_completion,
                "total": self.saved_prompt + self.saved_completion,
            },
            "cost_saved_usd": str(self.cost_saved),
            "cost_spent_usd": str(self.cost_spent),
        }


class Accounting:
    def __init__(self) -> None:
        self.since = time.time()
        self.total = Counters()
        self.by_model: dict[str, Counters] = {}

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
        """Count one answer; tokens and cost are saved on HIT/COALESCED, spent otherwise."""
        for counters in (self.total, self.by_model.setdefault(model, Counters())):
            name = _COUNTER[status]
            setattr(counters, name, getattr(counters, name) + count)
            if status in (CacheStatus.HIT, CacheStatus.COALESCED):
                counters.saved_prompt += prompt_tokens
                counters.saved_completion += completion_tokens
                counters.cost_saved += cost
            else:
                counters.cost_spent += cost

    def record_error(self, model: str | None = None) -> None:
        """A cache backend error (the request itself went on)."""
        self.total.errors += 1
        if model is not None:
            self.by_model.setdefault(model, Counters()).errors += 1

    def snapshot(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.since))
        }
        doc.update(self.total.as_dict())
        doc["by_model"] = {m: c.as_dict() for m, c in sorted(self.by_model.items())}
        return doc
