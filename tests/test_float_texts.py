"""The float text of vectors served lately (`genai_api.embeddings.float_texts`): printed once,
spliced byte for byte as orjson prints it, bounded."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from genai_api.embeddings import float_texts
from genai_api.embeddings.float_texts import FloatTexts
from genai_api.embeddings.vectors import FLOAT32, as_array


def vector(seed: int, dims: int = 1536) -> bytes:
    return np.random.default_rng(seed).standard_normal(dims).astype(FLOAT32).tobytes()


def test_the_spliced_text_is_what_orjson_prints_for_the_vector() -> None:
    texts = FloatTexts()
    raws = [vector(i) for i in range(3)] + [np.array([0.0, -0.0, 1e-45], FLOAT32).tobytes()]
    doc = {"data": [{"embedding": texts.text(raw)} for raw in raws]}
    direct = {"data": [{"embedding": as_array(raw)} for raw in raws]}
    option = orjson.OPT_SERIALIZE_NUMPY
    assert orjson.dumps(doc, option=option) == orjson.dumps(direct, option=option)
    read_back = [d["embedding"] for d in orjson.loads(orjson.dumps(doc))["data"]]
    assert [np.array(floats, FLOAT32).tobytes() for floats in read_back] == raws  # exact


def test_a_vector_served_again_is_not_printed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    printed: list[bytes] = []

    def counted(raw: bytes) -> Any:
        printed.append(raw)
        return as_array(raw)

    monkeypatch.setattr(float_texts, "as_array", counted)
    texts = FloatTexts()
    a, b = vector(1), vector(2)
    for raw in (a, b, a, bytes(bytearray(a)), b):  # equal bytes in another object too
        texts.text(raw)
    assert printed == [a, b]


def test_the_table_is_bounded_and_starts_over_when_full() -> None:
    one = len(orjson.dumps(as_array(vector(1)), option=orjson.OPT_SERIALIZE_NUMPY))
    texts = FloatTexts(max_bytes=2 * (one + 6144) + 100)
    for seed in (1, 2, 3):  # the third does not fit: the table is emptied first
        texts.text(vector(seed))
    assert len(texts._texts) == 1
    huge = FloatTexts(max_bytes=1000)
    huge.text(vector(1))  # larger than the whole table: printed, not kept
    assert huge._texts == {}
