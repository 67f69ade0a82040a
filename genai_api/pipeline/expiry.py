"""How long an entry lives: the TTL it is stored with, and what a sliding hit gives it back.

Apart from the pipeline's steps because every kind of answer asks the same three questions
(a completion's store, an embeddings batch's entries, a sliding hit's read) and only the
settings answer them: a request's own `X-Cache-TTL`, else the model's TTL from the models
file, else `CACHE_DEFAULT_TTL`, with ±10 % jitter so entries written together do not expire
together, never above `CACHE_MAX_TTL`.
"""

from __future__ import annotations

import random

from genai_api.controls import CacheControls
from genai_api.models.table import ModelInfo

JITTER = 0.10


class Expiry:
    def __init__(self, default_ttl: int, max_ttl: int) -> None:
        self.default_ttl = default_ttl
        self.max_ttl = max_ttl

    def ttl(self, model: ModelInfo, controls: CacheControls) -> float:
        """The requested TTL (capped), else the model's or the default with ±10 % jitter."""
        if controls.ttl is not None:
            return float(min(controls.ttl, self.max_ttl))
        base = model.ttl or self.default_ttl
        return float(min(base * random.uniform(1 - JITTER, 1 + JITTER), self.max_ttl))

    def slide_ms(self, model: ModelInfo) -> int:
        """What a hit of `model` sets its entry's TTL back to at most (ms), 0: not sliding."""
        return self.max_ttl * 1000 if model.sliding else 0

    def model_ttl_ms(self, model: ModelInfo) -> int:
        """What an embeddings hit of a sliding `model` gives its entries (ms): the model's TTL,
        capped, without jitter (a vector entry does not carry the TTL it was stored with);
        0 when not sliding."""
        if not model.sliding:
            return 0
        return min(model.ttl or self.default_ttl, self.max_ttl) * 1000
