"""The float32 vector codec and the compact stored entry."""

from __future__ import annotations

import base64
import struct

import numpy as np
import pytest

from genai_api.vectors import VectorEntry, as_array, as_base64, from_provider


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
    # NaNs, infinities, denormals: every byte value in the high plane, nothing to deflate.
    raw = np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    encoded = VectorEntry(raw, 1, 0.0).encode()
    assert len(encoded) == 22 + len(raw)
    decoded = VectorEntry.decode(encoded)
    assert decoded is not None and decoded.vector == raw


def test_1536_dim_entry_fits_below_the_raw_vector_size() -> None:
    # Under 6,144 bytes with its header, the value fits jemalloc's 6 KiB class in Redis.
    encoded = VectorEntry(_embedding(1536), 12, 0.0).encode()
    assert encoded[:2] == b"E1"
    assert len(encoded) < 6144 - 16


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"E1",
        b'{"v": 1, "response": {}}',  # a chat entry is not a vector entry
        b"E2" + bytes(40),  # another format version
    ],
)
def test_bytes_that_are_not_an_entry_decode_to_none(raw: bytes) -> None:
    assert VectorEntry.decode(raw) is None


def test_truncated_or_corrupted_entry_decodes_to_none() -> None:
    encoded = VectorEntry(_embedding(64), 2, 0.0).encode()
    assert VectorEntry.decode(encoded[:-1]) is None
    assert VectorEntry.decode(encoded + b"x") is None
    broken = encoded[:-8] + bytes(8)
    assert VectorEntry.decode(broken) is None


def test_age_counts_whole_seconds_since_stored() -> None:
    entry = VectorEntry(b"", 0, stored_at=100.0)
    assert entry.age(now=161.9) == 61
    assert entry.age(now=50.0) == 0
