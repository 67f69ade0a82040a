"""Bodies seen before: what a repeated request's check and keys came to, by its bytes.

A cache hit is a body the gateway has seen before. Checking it against its API's schema
and reducing it to its cache key (an embeddings batch: a key per input) are pure functions
of its bytes and of what else the work read (the API, the tenant, the model and its
tokenizer, the prompt template: all part of the name a result is kept under), yet they were
a ninth of a served chat hit's instructions (`python -m bench.count_served`: 499,762 ->
443,773) and ~50 µs of a 64-input embeddings hit. So the results are kept for bodies up to
`MAX_BODY_BYTES`, in a table of at most `MAX_BYTES` (bodies and entries), emptied when full
(a cheap bound that keeps what is hot: it is asked for again at once).

Only what is recomputed from the bytes is kept: never the parsed body (the pipeline may
change its own copy) and nothing read from the request's headers (cache controls, the
caller): those are worked out for each request. A body that fails its check is not kept,
so its error is worded each time by the schema. The bytes themselves are the table's keys
(compared whole on a match), so what is found for a body can only be its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from genai_api.apis.base import Api
from genai_api.models.table import ModelInfo

MAX_BODY_BYTES = 16 * 1024  # a chat body with a long system prompt; larger ones: no memo
MAX_BYTES = 4 * 1024 * 1024  # of memory the table may hold, per process (counted as below)
# What an entry costs besides the body's bytes: its name tuple, the dict's slot and what is
# kept (a chat body's check and keys: ~550 bytes over both, measured with tracemalloc).
ENTRY_BYTES = 300


@dataclass(frozen=True, slots=True)
class Keys:
    """What `Preparer.prepare` worked out from a body's bytes for one model."""

    model: ModelInfo  # the models table's entry it was for (a changed entry: not reused)
    key: str
    skey: str
    cacheable: bool
    nondeterministic: bool


class Repeats:
    """The table. What is remembered is named by a tuple starting with the body's bytes,
    then whatever else the work depended on (the API, the tenant, the model's name ...)."""

    def __init__(self, max_bytes: int = MAX_BYTES, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.max_bytes = max_bytes
        self.max_body_bytes = max_body_bytes
        self._known: dict[tuple[Any, ...], Any] = {}
        self._bytes = 0

    def check(self, api: Api, body: dict[str, Any], raw: bytes | None) -> None:
        """`api.check(body)`, unless `raw` (the bytes `body` was parsed from; None: a body
        made otherwise) passed before."""
        if raw is None:
            api.check(body)
            return
        if (raw, api.name) in self._known:
            return
        api.check(body)  # raises for a bad body: nothing remembered
        self.keep((raw, api.name), True)

    def recall(self, name: tuple[Any, ...]) -> Any | None:
        """What was kept under `name` (its first item the body's bytes), if anything."""
        return self._known.get(name)

    def keep(self, name: tuple[Any, ...], value: Any) -> None:
        """Remember `value` under `name`, whose first item is the body's bytes (what is
        counted against the bounds); a body too large is not remembered."""
        size = len(name[0])
        if size > self.max_body_bytes:
            return
        size += ENTRY_BYTES
        if self._bytes + size > self.max_bytes:
            self._known.clear()
            self._bytes = 0
        self._known[name] = value
        self._bytes += size


def same_model(kept: ModelInfo, model: ModelInfo) -> bool:
    """Whether work done for `kept` holds for `model`: the same entry of the models table,
    or (an unknown model's defaults, made for each request) an equal one; a reloaded
    table's changed entry is not."""
    return kept is model or kept == model
