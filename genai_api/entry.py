"""The stored form of a cached answer: one JSON document per key.

`{"v": 1, "ttl_ms": <ms>, "stored_at": <unix s>, "model": ..., "usage": {...}, "response": {...}}`
The metadata travels with the response so a hit costs one GET, and the response is kept
exactly as the provider sent it so a hit answers the same bytes a miss did. `ttl_ms` is the
TTL the entry was stored with (jitter included), written right after `v` so that a Redis
script can read it from the value's first bytes, without parsing the JSON: a model with
sliding expiration has each hit set the entry's TTL back to it (`stored_ttl_ms`).

A nondeterministic request's key may hold several answers (`CACHE_VARIANTS`, see
`genai_api.pipeline.variants`): the first is the document itself, the others follow in `"more"`,
each `{"stored_at", "usage", "response"[, "chunks"]}`, so a hit still reads one key.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

ENTRY_VERSION = 1
# Decoded entries shared by the hits that read the same stored bytes (see `decode_shared`).
SHARED_ENTRIES = 256
SHARED_MAX_BYTES = 32 * 1024


@dataclass(slots=True)
class Entry:
    response: dict[str, Any]
    stored_at: float
    model: str
    usage: dict[str, Any] | None = None
    chunks: list[dict[str, Any]] | None = None
    rendered: bytes | None = field(default=None, repr=False, compare=False)
    more: list[Entry] | None = field(default=None, repr=False)  # the other stored answers
    index: int = 0  # which answer of its stored entry this one is (0: the first)

    @classmethod
    def fresh(
        cls,
        response: dict[str, Any],
        *,
        model: str,
        usage: dict[str, Any] | None = None,
        chunks: list[dict[str, Any]] | None = None,
    ) -> Entry:
        """A new answer; `usage` in the entry's shape (`Api.usage`, or counted by us)."""
        return cls(
            response=response, stored_at=time.time(), model=model, usage=usage, chunks=chunks
        )

    def encode(self, ttl: float | None = None) -> bytes:
        """The stored bytes; `ttl` (seconds) is the TTL they are stored with, if known."""
        doc: dict[str, Any] = {"v": ENTRY_VERSION}
        if ttl is not None:
            doc["ttl_ms"] = ttl_ms(ttl)
        doc |= {
            "stored_at": self.stored_at,
            "model": self.model,
            "usage": self.usage,
            "response": self.response,
        }
        if self.chunks is not None:
            doc["chunks"] = self.chunks
        if self.more:
            doc["more"] = [other._answer() for other in self.more]
        return orjson.dumps(doc)

    def _answer(self) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "stored_at": self.stored_at,
            "usage": self.usage,
            "response": self.response,
        }
        if self.chunks is not None:
            answer["chunks"] = self.chunks
        return answer

    @property
    def answers(self) -> int:
        """How many answers the stored entry holds."""
        return 1 + len(self.more or ())

    def variant(self, index: int) -> Entry:
        """The `index`-th answer of the stored entry (0: this one)."""
        return self if index == 0 or not self.more else self.more[index - 1]

    def with_answer(self, fresh: Entry) -> Entry:
        """This stored entry with `fresh` as one more answer (its `index` set to its place)."""
        answers = [self.variant(i) for i in range(self.answers)]
        fresh.index = len(answers)
        first = answers[0]
        return Entry(
            response=first.response,
            stored_at=first.stored_at,
            model=first.model,
            usage=first.usage,
            chunks=first.chunks,
            more=[*answers[1:], fresh],
        )

    @classmethod
    def decode(cls, raw: bytes) -> Entry | None:
        """The entry, or None for bytes that are not an entry of this version (a miss)."""
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(doc, dict) or doc.get("v") != ENTRY_VERSION:
            return None
        response = doc.get("response")
        if not isinstance(response, dict):
            return None
        model = str(doc.get("model") or "")
        entry = cls(
            response=response,
            stored_at=float(doc.get("stored_at") or 0.0),
            model=model,
            usage=doc.get("usage"),
            chunks=doc.get("chunks"),
        )
        more = doc.get("more")
        if isinstance(more, list):
            usable = [
                o for o in more if isinstance(o, dict) and isinstance(o.get("response"), dict)
            ]
            entry.more = [
                cls(
                    response=other["response"],
                    stored_at=float(other.get("stored_at") or 0.0),
                    model=model,
                    usage=other.get("usage"),
                    chunks=other.get("chunks"),
                    index=position,
                )
                for position, other in enumerate(usable, start=1)
            ]
        return entry

    def body(self) -> bytes:
        """The response as JSON, serialised once per entry object (hits share one)."""
        if self.rendered is None:
            self.rendered = orjson.dumps(self.response)
        return self.rendered

    def age(self, now: float | None = None) -> int:
        return max(0, int((now if now is not None else time.time()) - self.stored_at))

    def tokens(self) -> tuple[int, int]:
        """(prompt, completion) tokens this answer cost the first time."""
        usage = self.usage or {}
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


def ttl_ms(ttl: float) -> int:
    """A TTL in seconds as the whole milliseconds Redis is given (`PX`), at least 1."""
    return max(1, int(ttl * 1000))


# What the Lua scripts match with '^{"v":1,"ttl_ms":(%d+)': the value's first bytes only,
# so no text of the response can pass for it.
_STORED_TTL = re.compile(rb'\{"v":1,"ttl_ms":(\d+)[,}]')


def stored_ttl_ms(raw: bytes) -> int | None:
    """The TTL (ms) `raw` was stored with, None for an entry written without it."""
    found = _STORED_TTL.match(raw)
    return int(found.group(1)) if found else None


_shared: dict[bytes, Entry] = {}


def decode_shared(raw: bytes) -> Entry | None:
    """`Entry.decode(raw)`, shared with every other hit on the same stored bytes.

    A hot key is read over and over (from the L1, as the very same bytes object, whose hash
    Python keeps): parsing it and serialising its response again each time was a tenth of a
    hit's CPU. Decoded entries are never changed (only fresh ones get a counted usage), so
    sharing one is safe. Bounded: small entries only, and the memo starts over when full.
    """
    if len(raw) > SHARED_MAX_BYTES:
        return Entry.decode(raw)
    entry = _shared.get(raw)
    if entry is None:
        entry = Entry.decode(raw)
        if entry is not None:
            if len(_shared) >= SHARED_ENTRIES:
                _shared.clear()
            _shared[raw] = entry
    return entry
