"""Hits share one decoded entry per stored bytes, and what they answer stays exact."""

from __future__ import annotations

import orjson

from genai_api import entry as entry_module
from genai_api.entry import Entry, decode_shared


def _raw(text: str, size: int = 0) -> bytes:
    response = {"object": "chat.completion", "choices": [{"message": {"content": text}}]}
    if size:
        response["padding"] = "x" * size
    return Entry.fresh(response, model="m").encode()


def test_the_same_bytes_decode_once_and_render_once() -> None:
    raw = _raw("hello")
    first, again = decode_shared(raw), decode_shared(bytes(raw))  # equal bytes, another object
    assert first is not None and first is again
    body = first.body()
    assert first.body() is body  # serialised once
    assert orjson.loads(body) == orjson.loads(raw)["response"]


def test_different_bytes_and_big_entries_are_not_shared() -> None:
    a, b = decode_shared(_raw("a")), decode_shared(_raw("b"))
    assert a is not None and b is not None and a is not b
    assert a.response != b.response
    big = _raw("big", size=entry_module.SHARED_MAX_BYTES)
    assert decode_shared(big) is not decode_shared(big)


def test_the_memo_is_bounded() -> None:
    for i in range(entry_module.SHARED_ENTRIES * 3):
        decode_shared(_raw(str(i)))
    assert len(entry_module._shared) <= entry_module.SHARED_ENTRIES


def test_bytes_that_are_not_an_entry_stay_a_miss() -> None:
    assert decode_shared(b"not json") is None
    assert decode_shared(orjson.dumps({"v": 99, "response": {}})) is None
