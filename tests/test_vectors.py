"""The float32 vector codec and the compact stored entry."""

from __future__ import annotations

import base64
import struct

import numpy as np
import pytest

from genai_api.embeddings.vectors import (
    VectorEntry,
    as_array,
    as_base64,
    decode_many,
    from_provider,
)

# A 4-dim entry of format E1, as earlier versions stored it: magic, dims, tokens, stored_at,
# packed, deflated length, then the vector.
E1_ENTRY = struct.pack("<2sIIdHH", b"E1", 4, 7, 1.25, 0, 0) + struct.pack("<4f", *[0.5] * 4)


def _embedding(dims: int = 1536, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(dims) / np.sqrt(dims)).astype("<f4").tobytes()


def test_base64_from_provider_is_kept_byte_for_byte() -> None:
    raw = _embedding(16)
    assert from_provider(base64.b64encode(raw).decode()) == raw
    assert as_base64(raw) == base64.b64encode(raw).decode()


def test_float_list_from_provider_becomes_the_same_float32_bytes() -> None:
    raw = _embedding(16)
    floats = np.frombuffer(raw, "<f4").tolist()  # what a float answer holds
    assert from_provider(floats) == raw
    assert from_provider([1, 0.5]) == struct.pack("<2f", 1.0, 0.5)


@pytest.mark.parametrize("bad", ["not base64!", "AAAA", "", [], [1, "2"], [True], None, {"a": 1}])
def test_anything_else_from_provider_is_rejected(bad: object) -> None:
    with pytest.raises(ValueError):
        from_provider(bad)


def test_as_array_reads_float32_values() -> None:
    raw = struct.pack("<3f", 0.1, -2.0, 3.5)
    array = as_array(raw)
    assert array.dtype == np.float32
    assert array.tolist() == [np.float32(0.1), -2.0, 3.5]


@pytest.mark.parametrize("dims", [1, 3, 256, 1536, 3072])
def test_entry_round_trip_is_exact(dims: int) -> None:
    entry = VectorEntry(_embedding(dims, seed=dims), tokens=7, stored_at=1_700_000_000.25)
    decoded = VectorEntry.decode(entry.encode())
    assert decoded == entry


def test_entry_of_arbitrary_bits_round_trips_uncompressed() -> None:
    # NaNs, infinities, denormals: high bytes outside the packable range, stored as they are.
    raw = np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    encoded = VectorEntry(raw, 1, 0.0).encode()
    assert len(encoded) == 20 + len(raw)
    decoded = VectorEntry.decode(encoded)
    assert decoded is not None and decoded.vector == raw


def test_an_exact_zero_among_the_packed_floats_stores_the_vector_plain() -> None:
    raw = bytearray(_embedding(1536))
    raw[-4:] = bytes(4)  # 0.0: its high byte is not s011eeee
    encoded = VectorEntry(bytes(raw), 1, 0.0).encode()
    assert len(encoded) == 20 + 6144
    decoded = VectorEntry.decode(encoded)
    assert decoded is not None and decoded.vector == raw


def test_every_sign_and_exponent_of_the_packed_range_round_trips() -> None:
    # |x| in [2**-31, 2): high bytes 0x30-0x3F and 0xB0-0xBF, in every combination of three.
    rng = np.random.default_rng(5)
    highs = np.array([*range(0x30, 0x40), *range(0xB0, 0xC0)], dtype=np.uint8)
    floats = rng.integers(0, 256, (1536, 4), dtype=np.uint8)
    floats[-96:, 3] = np.repeat(highs, 3)  # each value three times in a row
    floats[-120:-96, 3] = highs[rng.integers(0, 32, 24)]
    raw = floats.tobytes()
    encoded = VectorEntry(raw, 2, 0.0).encode()
    assert len(encoded) == 20 + 6144 - 40
    decoded = VectorEntry.decode(encoded)
    assert decoded is not None and decoded.vector == raw


@pytest.mark.parametrize("dims", [1536, 3072])
def test_entry_fits_the_size_class_of_the_raw_vector(dims: int) -> None:
    # Redis keeps a value in an allocation of len + 6 bytes (sds header and terminator), and
    # jemalloc rounds 6,144 and 12,288 bytes to themselves but anything above to 7 / 14 KiB.
    encoded = VectorEntry(_embedding(dims), 12, 0.0).encode()
    assert encoded[:2] == b"E2"
    assert len(encoded) + 6 <= dims * 4


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"E2",
        b'{"v": 1, "response": {}}',  # a chat entry is not a vector entry
        b"E3" + bytes(40),  # another format version
        E1_ENTRY,  # the previous format, never misread
    ],
)
def test_bytes_that_are_not_an_entry_decode_to_none(raw: bytes) -> None:
    assert VectorEntry.decode(raw) is None


def test_truncated_or_extended_entry_decodes_to_none() -> None:
    encoded = VectorEntry(_embedding(64), 2, 0.0).encode()
    assert VectorEntry.decode(encoded[:-1]) is None
    assert VectorEntry.decode(encoded + b"x") is None
    assert VectorEntry.decode(encoded[:-4]) is None  # a whole float short of its dims


def test_a_batch_decodes_each_value_in_place() -> None:
    vectors = [_embedding(1536, seed=i) for i in range(3)]
    entries = [VectorEntry(v, i, float(i)) for i, v in enumerate(vectors)]
    small = VectorEntry(_embedding(256), 9, 9.0)
    raws = [entries[0].encode(), None, b"E2junk", entries[1].encode(), small.encode()]
    raws.append(entries[2].encode())
    assert decode_many(raws) == [entries[0], None, None, entries[1], small, entries[2]]
    assert decode_many([e.encode() for e in entries]) == entries  # all of one layout
    assert decode_many([]) == []


def test_age_counts_whole_seconds_since_stored() -> None:
    entry = VectorEntry(b"", 0, stored_at=100.0)
    assert entry.age(now=161.9) == 61
    assert entry.age(now=50.0) == 0
