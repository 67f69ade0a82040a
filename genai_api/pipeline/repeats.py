"""Bodies seen before: what a repeated request's check and keys came to, by its bytes.

A cache hit is a body the gateway has seen before. Checking it against its API's schema and
reducing it to its cache key are pure functions of its bytes (and of the API, the tenant,
the model and the prompt template, all part of what is remembered by), yet they were a
sixth of a served chat hit's instructions (`python -m bench.count_served`). So both answers
are remembered for bodies up to `MAX_BODY_BYTES`, in a table of at most `MAX_BYTES` of
bodies, started over when full (a cheap bound that keeps what is hot: it is seen again
right away).

Only what is recomputed from the bytes is kept: never the parsed body (the pipeline may
change its own copy) and nothing read from the request's headers (cache controls, the
caller): those are worked out for each request. A body that fails its check is not
remembered, so its error is worded each time by the schema. The bytes themselves are the
table's keys (compared whole on a match), so a body remembered can only be its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from genai_api.apis.base import Api
from genai_api.models.table import ModelInfo

MAX_BODY_BYTES = 16 * 1024  # a chat body with a long system prompt; larger ones: no memo
MAX_BYTES = 4 * 1024 * 1024  # of bodies remembered, per process


@dataclass(frozen=True, slots=True)
class Keys:
    """What `Preparer.prepare` worked out from a body's bytes for one model."""

    model: ModelInfo  # the models table's entry it was for (a changed entry: not reused)
    key: str
    skey: str
    cacheable: bool
    nondeterministic: bool


class Repeats:
    def __init__(self, max_bytes: int = MAX_BYTES, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.max_bytes = max_bytes
        self.max_body_bytes = max_body_bytes
        self._checked: dict[tuple[bytes, str], bool] = {}
        self._keys: dict[tuple[bytes, str, str, str, str | None], Keys] = {}
        self._bytes = 0

    def check(self, api: Api, body: dict[str, Any], raw: bytes | None) -> None:
        """`api.check(body)`, unless `raw` (the bytes `body` was parsed from; None: a body
        made otherwise) passed before."""
        if raw is None:
            api.check(body)
            return
        if (raw, api.name) in self._checked:
            return
        api.check(body)  # raises for a bad body: nothing remembered
        if self._room(raw):
            self._checked[raw, api.name] = True

    def keys(
        self, raw: bytes, api: Api, tenant: str, model: ModelInfo, prompt: str | None
    ) -> Keys | None:
        known = self._keys.get((raw, api.name, tenant, model.name, prompt))
        if known is None:
            return None
        # The same entry of the models table, or (an unknown model's defaults, made for each
        # request) an equal one; a reloaded table's changed entry is not.
        if known.model is not model and known.model != model:
            return None
        return known

    def remember(self, raw: bytes, api: Api, tenant: str, prompt: str | None, keys: Keys) -> None:
        if self._room(raw):
            self._keys[raw, api.name, tenant, keys.model.name, prompt] = keys

    def _room(self, raw: bytes) -> bool:
        """Whether `raw` may be remembered (counted now); when the table is full it is
        emptied first."""
        size = len(raw)
        if size > self.max_body_bytes:
            return False
        if self._bytes + size > self.max_bytes:
            self._checked.clear()
            self._keys.clear()
            self._bytes = 0
        self._bytes += size
        return True
