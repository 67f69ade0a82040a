"""Embedding vectors as little-endian float32 bytes, and their compact stored form.

Providers compute embeddings in float32; OpenAI's `encoding_format: "base64"` is exactly the
base64 of those float32 values, little-endian. So the gateway keeps every vector as those raw
bytes: a base64 answer is one SIMD `b64encode` (pybase64: ~1 µs for 1,536 dims, CPython's
`binascii` takes ~16), a float answer one `np.frombuffer` that orjson prints (shortest text
that reads back as the same float32), and nothing is ever rounded.

A stored entry (`VectorEntry.encode`) is a 20-byte header and a payload:

    b"E2" | packed u16 | dims u32 | tokens u32 | stored_at f64 | payload  (LE)

`tokens` is the input's own share of the provider's usage, so saved tokens are exact per
input. Why not base64 or JSON floats in the store: a 1536-dim vector is 6,144 raw bytes,
8,192 as base64 and ~30,000 as JSON. Why `packed`: Redis (jemalloc) rounds a value up to
its size class, and 6,144 bytes plus any header lands in the 7,168 class (1.19x). The last
`packed` floats (120) give up the bits their high byte (sign and exponent) cannot use:
for |x| in [2**-31, 2) - every value of a normalised embedding but an exact 0 - that byte
is `s011eeee`, 5 bits of information, so the high bytes of three floats fit in 2 bytes.
That saves 40 bytes, the entry (6,124 bytes for 1,536 dims) fits the raw vector's class,
losslessly, and a whole batch decodes with three numpy calls, one a table lookup
(`decode_many`), where format E1 inflated 512 deflated high bytes per entry (~20 µs each).
`packed == 0`: the payload is the plain vector (some value out of that range).

    payload = vector[:-4*packed] | low 3 bytes of each packed float |
              per 3 packed floats, (c0 | c1 << 5 | c2 << 10) as u16, c = sign << 4 | high & 15

There is no checksum: Redis hands back the bytes it was given, and the magic and the length
the header implies turn away anything that is not an entry of this format (another version,
a chat entry, a truncated value) as a miss.

    >>> raw = from_provider([0.5, -1.0])
    >>> VectorEntry.decode(VectorEntry.fresh(raw, tokens=3).encode()).vector == raw
    True
"""

from __future__ import annotations

import binascii
import operator
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pybase64

FLOAT32 = np.dtype("<f4")
MAGIC = b"E2"  # entry kind and format version: bump the digit when the layout changes
_HEADER = struct.Struct("<2sHIId")
_LAYOUT = operator.itemgetter(0, 1, 2)  # of an unpacked header: magic, packed, dims
# Floats whose high bytes are stored 3 to 2 bytes: 40 bytes saved, enough to bring a 1,536-
# or 3,072-dim vector and its header under the size class of the raw vector.
PACKED_FLOATS = 120
_HIGH_BITS = 0x30  # bits 4-6 of the high byte of a float in [2**-31, 2): 0b011
_HIGH_MASK = 0x70


def from_provider(embedding: object) -> bytes:
    """A provider's `embedding` field (base64 string or float list) as float32 LE bytes.

    Raises `ValueError` for anything that is not a vector.
    """
    if isinstance(embedding, str):
        try:
            raw = pybase64.b64decode(embedding, validate=True)
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
    return pybase64.b64encode_as_string(raw)


def as_array(raw: bytes) -> npt.NDArray[np.float32]:
    """The vector as a float32 array (zero-copy view), for orjson's numpy serialisation."""
    return np.frombuffer(raw, dtype=FLOAT32).astype(np.float32, copy=False)


def _packed_size(packed: int) -> int:
    """Payload bytes of `packed` floats: 3 low bytes each, 2 bytes per 3 high bytes."""
    return 3 * packed + 2 * (packed // 3)


def _pack(raw: bytes) -> tuple[bytes, int]:
    """(payload, packed): see the module docstring; (raw, 0) when a value is out of range."""
    dims = len(raw) // 4
    packed = min(PACKED_FLOATS, dims - dims % 3)
    if packed == 0:
        return raw, 0
    floats = np.frombuffer(raw, dtype=np.uint8).reshape(dims, 4)[dims - packed :]
    high = floats[:, 3]
    if not np.all(high & _HIGH_MASK == _HIGH_BITS):
        return raw, 0
    codes = ((high >> 7) << 4 | (high & 0x0F)).astype("<u2")  # 5 bits: sign, exponent
    keys = codes[0::3] | codes[1::3] << 5 | codes[2::3] << 10
    return raw[: 4 * (dims - packed)] + floats[:, :3].tobytes() + keys.tobytes(), packed


def _high_bytes(codes: npt.NDArray[np.integer[Any]]) -> npt.NDArray[np.uint8]:
    return ((codes >> 4) << 7 | _HIGH_BITS | (codes & 0x0F)).astype(np.uint8)


# Each 15-bit key as the high bytes of its three floats: decoding them is one table lookup.
_KEYS = np.arange(1 << 15, dtype=np.uint16)
_TRIPLES = np.stack([_high_bytes(_KEYS >> shift & 0x1F) for shift in (0, 5, 10)], axis=1)


def _restore(packed_rows: bytes, rows: int, packed: int) -> npt.NDArray[np.uint8]:
    """The last `packed` floats of `rows` entries (float32 bytes, one row each) from their
    packed bytes laid end to end. Three numpy calls whatever the batch size: in a server,
    between two Redis reads, each costs ~10 µs, so their number is what counts. The low 3
    bytes of each float are read as a uint32 at a stride of 3 (its 4th byte masked off)."""
    size = _packed_size(packed)
    floats = np.ndarray((rows, packed), dtype="<u4", buffer=packed_rows, strides=(size, 3))
    keys = np.ndarray(
        (rows, packed // 3), dtype="<u2", buffer=packed_rows, offset=3 * packed, strides=(size, 2)
    )
    out = floats & 0xFFFFFF
    high = np.take(_TRIPLES, keys, axis=0, mode="wrap")  # wrap: no 16th bit in a key
    out.view(np.uint8).reshape(rows, packed, 4)[:, :, 3] = high.reshape(rows, packed)
    return out.view(np.uint8)


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
        payload, packed = _pack(self.vector)
        return _HEADER.pack(MAGIC, packed, self.dims, self.tokens, self.stored_at) + payload

    @classmethod
    def decode(cls, raw: bytes) -> VectorEntry | None:
        """The entry, or None for bytes that are not an entry of this format (a miss)."""
        return decode_many([raw])[0]

    def age(self, now: float | None = None) -> int:
        return max(0, int((now if now is not None else time.time()) - self.stored_at))


def decode_many(raws: Sequence[bytes | None]) -> list[VectorEntry | None]:
    """Each stored value as an entry, or None where it is absent or not an entry (a miss).

    Entries of one layout (a batch's: one model, one `dimensions`) are decoded together:
    their packed floats with one set of numpy calls, the rest with a few C-level calls each.
    """
    start = _HEADER.size
    if raws and None not in raws:  # a batch of hits: C-level checks of the common case
        hits = cast("Sequence[bytes]", raws)
        if len(set(map(len, hits))) == 1 and len(hits[0]) >= start:
            heads = list(map(_HEADER.unpack_from, hits))
            if len(set(map(_LAYOUT, heads))) == 1:
                return _decode_layout(hits, heads)
    out: list[VectorEntry | None] = [None] * len(raws)
    groups: dict[tuple[Any, ...], list[tuple[int, bytes]]] = {}
    for pos, raw in enumerate(raws):
        if raw is not None and len(raw) >= start:
            layout = (len(raw), *_LAYOUT(_HEADER.unpack_from(raw)))
            groups.setdefault(layout, []).append((pos, raw))
    for members in groups.values():
        same = [raw for _, raw in members]
        entries = _decode_layout(same, list(map(_HEADER.unpack_from, same)))
        for (pos, _), entry in zip(members, entries, strict=True):
            out[pos] = entry
    return out


def _decode_layout(
    raws: Sequence[bytes], heads: Sequence[tuple[Any, ...]]
) -> list[VectorEntry | None]:
    """Values of one length whose headers share magic, `packed` and dims."""
    magic, packed, dims = heads[0][:3]
    start = _HEADER.size
    plain = 4 * (dims - packed)
    if (
        magic != MAGIC
        or plain < 0
        or packed % 3
        or len(raws[0]) != start + plain + _packed_size(packed)
    ):
        return [None] * len(raws)
    if not packed:
        return [VectorEntry(raw[start:], h[3], h[4]) for raw, h in zip(raws, heads, strict=True)]
    cut = start + plain
    tails = _restore(b"".join([raw[cut:] for raw in raws]), len(raws), packed)
    return [
        VectorEntry(b"".join((memoryview(raw)[start:cut], tail)), h[3], h[4])
        for raw, tail, h in zip(raws, tails, heads, strict=True)
    ]
