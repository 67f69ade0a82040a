"""Embedding vectors as little-endian float32 bytes, and their compact stored form.

Providers compute embeddings in float32; OpenAI's `encoding_format: "base64"` is exactly the
base64 of those float32 values, little-endian. So the gateway keeps every vector as those raw
bytes: a base64 answer is one `b64encode`, a float answer one `np.frombuffer` that orjson
prints (shortest text that reads back as the same float32), and nothing is ever rounded.

A stored entry (`VectorEntry.encode`) is a 22-byte header and the vector's bytes:

    b"E1" | dims u32 | tokens u32 | stored_at f64 | packed u16 | top u16 | payload  (LE)

`tokens` is the input's own share of the provider's usage, so saved tokens are exact per
input. Why not base64 or JSON floats in the store: a 1536-dim vector is 6,144 raw bytes,
8,192 as base64 and ~30,000 as JSON. Why `packed`: Redis (jemalloc) rounds a value up to
its size class, and 6,144 bytes plus any header lands in the 7,168 class. The high byte of
a float (sign and exponent) takes few distinct values in an embedding, so the first
`packed` floats are stored as their three low bytes, and their high bytes deflated after
the rest of the vector (512 → ~230 bytes): the entry fits the raw vector's class, losslessly,
and decoding touches only those 512 floats. `packed == 0`: the payload is the plain vector
(when deflating would not help, e.g. arbitrary bits).

    >>> raw = from_provider([0.5, -1.0])
    >>> VectorEntry.decode(VectorEntry.fresh(raw, tokens=3).encode()).vector == raw
    True
"""

from __future__ import annotations

import base64
import binascii
import struct
import time
import zlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FLOAT32 = np.dtype("<f4")
MAGIC = b"E1"  # entry kind and format version: bump the digit when the layout changes
_HEADER = struct.Struct("<2sIIdHH")
_WBITS = -15  # raw deflate: no zlib header or checksum, the length check guards the entry
# Floats whose high byte is deflated: enough to save the ~50 bytes that keep a 1,536- or
# 3,072-dim entry inside the size class of its raw vector, few enough to decode in ~5 µs.
PACKED_FLOATS = 512


def from_provider(embedding: object) -> bytes:
    """A provider's `embedding` field (base64 string or float list) as float32 LE bytes.

    Raises `ValueError` for anything that is not a vector.
    """
    if isinstance(embedding, str):
        try:
            raw = base64.b64decode(embedding, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"invalid base64 embedding: {exc}") from None
        if not raw or len(raw) % 4:
            raise ValueError("a base64 embedding must hold whole float32 values")
        return raw
    if (
        isinstance(embedding, list)
        and embedding
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in embedding)
    ):
        return np.asarray(embedding, dtype=FLOAT32).tobytes()
    raise ValueError("an embedding must be a base64 string or a list of numbers")


def as_base64(raw: bytes) -> str:
    """OpenAI's base64 encoding of a vector: the float32 LE bytes, base64-encoded."""
    return base64.b64encode(raw).decode("ascii")


def as_array(raw: bytes) -> npt.NDArray[np.float32]:
    """The vector as a float32 array (zero-copy view), for orjson's numpy serialisation."""
    return np.frombuffer(raw, dtype=FLOAT32).astype(np.float32, copy=False)


def _pack(raw: bytes) -> tuple[bytes, int, int]:
    """(payload, packed, top): the first `packed` floats as three low bytes each, then the
    other floats as they are, then the high bytes of the first `packed` floats, deflated to
    `top` bytes. Extended slices of bytes: C speed, no array set-up per entry."""
    packed = min(len(raw) // 4, PACKED_FLOATS)
    head = packed * 4
    top = zlib.compress(raw[3:head:4], 9, _WBITS)
    if len(top) >= packed:
        return raw, 0, 0
    low = bytearray(packed * 3)
    for byte in range(3):
        low[byte::3] = raw[byte:head:4]
    return bytes(low) + raw[head:] + top, packed, len(top)


def _unpack(raw: bytes, at: int, dims: int, packed: int, top_len: int) -> bytes | None:
    """The vector from an entry whose payload starts at `raw[at]`.

    Strided slices of `bytes`, not of a memoryview: the latter are ~3x slower.
    """
    view = memoryview(raw)
    if packed == 0:
        return raw[at:] if len(raw) - at == dims * 4 else None
    low, rest = at + packed * 3, at + packed * 3 + (dims - packed) * 4
    if packed > dims or len(raw) != rest + top_len:
        return None
    try:
        top = zlib.decompress(view[rest:], _WBITS, packed)
    except zlib.error:
        return None
    if len(top) != packed:
        return None
    vector = bytearray(dims * 4)
    head = packed * 4
    for byte in range(3):
        vector[byte:head:4] = raw[at + byte : low : 3]
    vector[3:head:4] = top
    vector[head:] = view[low:rest]
    return bytes(vector)


@dataclass(slots=True)
class VectorEntry:
    """One cached embedding input: its vector, its tokens, when it was stored."""

    vector: bytes  # float32 LE
    tokens: int
    stored_at: float

    @classmethod
    def fresh(cls, vector: bytes, tokens: int) -> VectorEntry:
        return cls(vector, tokens, time.time())

    @property
    def dims(self) -> int:
        return len(self.vector) // 4

    def encode(self) -> bytes:
        payload, packed, top_len = _pack(self.vector)
        header = _HEADER.pack(MAGIC, self.dims, self.tokens, self.stored_at, packed, top_len)
        return header + payload

    @classmethod
    def decode(cls, raw: bytes) -> VectorEntry | None:
        """The entry, or None for bytes that are not an entry of this format (a miss)."""
        if len(raw) < _HEADER.size or raw[:2] != MAGIC:
            return None
        _, dims, tokens, stored_at, packed, top_len = _HEADER.unpack_from(raw)
        vector = _unpack(raw, _HEADER.size, dims, packed, top_len)
        if vector is None:
            return None
        return cls(vector, tokens, stored_at)

    def age(self, now: float | None = None) -> int:
        return max(0, int((now if now is not None else time.time()) - self.stored_at))
