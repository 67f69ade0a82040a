"""The float JSON text of vectors served lately, by their bytes: a hot vector is printed once.

A float answer prints each float32 as its shortest decimal (orjson, in C): ~25 ns a value,
~38 µs for a 1,536-dim vector, ~2.4 ms for a batch of 64, two thirds of a float batch hit's
CPU (`python -m bench.profile_embeddings`), where a store of ready-printed text only splices.
The text of a vector is a pure function of its bytes, so it is kept for the vectors served
lately (at most `MAX_BYTES` per process, text and the bytes that key it; emptied when full,
which keeps what is hot: it is asked for again at once) and spliced into the answer as an
`orjson.Fragment`. Finding it hashes the vector's bytes (~2 µs for 6 KB, against the ~38 µs
it saves) and compares them whole, so a text found is its own vector's. Base64 answers need
none of this: one SIMD `b64encode` per vector.

Answers of more than `OFFLOAD_VECTORS` are rendered in a worker thread: the table is a dict
(its operations atomic under the GIL) and the byte count a bound, not an exact figure.
"""

from __future__ import annotations

import orjson

from genai_api.embeddings.vectors import as_array

MAX_BYTES = 32 * 1024 * 1024  # ~1,400 vectors of 1,536 dims (~17 KB of text and 6 KB of key)


class FloatTexts:
    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._texts: dict[bytes, orjson.Fragment] = {}
        self._bytes = 0

    def text(self, raw: bytes) -> orjson.Fragment:
        """The vector of float32 bytes `raw` as a JSON array of floats, ready to splice."""
        known = self._texts.get(raw)
        if known is not None:
            return known
        printed = orjson.dumps(as_array(raw), option=orjson.OPT_SERIALIZE_NUMPY)
        fragment = orjson.Fragment(printed)
        size = len(printed) + len(raw)
        if size <= self.max_bytes:
            if self._bytes + size > self.max_bytes:
                self._texts.clear()
                self._bytes = 0
            self._texts[raw] = fragment
            self._bytes += size
        return fragment


FLOAT_TEXTS = FloatTexts()
"""The process's table (a pure function's memo, like `functools.lru_cache`: shared by every
app in the process, nothing in it is anyone's but the bytes' own)."""
