"""The SSE reader and writer: events survive any split of the bytes."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

from hypothesis import given
from hypothesis import strategies as st

from genai_api import sse

WIRE = (
    b": keep-alive\r\n\r\n"
    b'data: {"a": "caf\xc3\xa9"}\r\n\r\n'
    b"event: message\nid: 7\ndata: line one\ndata: line two\n\n"
    b"data:no-space\n\n"
    b"data: [DONE]\n\n"
)
EVENTS = ['{"a": "café"}', "line one\nline two", "no-space", "[DONE]"]


async def _pieces(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def _read(parts: list[bytes]) -> list[str]:
    async def collect() -> list[str]:
        return [e async for e in sse.data_events(_pieces(parts))]

    return asyncio.run(collect())


def test_encode_is_one_compact_data_event() -> None:
    assert sse.encode({"a": [1, "é"]}) == 'data: {"a":[1,"é"]}\n\n'.encode()


def test_reads_data_and_ignores_comments_and_other_fields() -> None:
    assert _read([WIRE]) == EVENTS


@given(st.lists(st.integers(min_value=0, max_value=len(WIRE)), max_size=12))
def test_any_split_of_the_bytes_reads_the_same_events(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(WIRE)]
    assert _read([WIRE[a:b] for a, b in itertools.pairwise(points)]) == EVENTS


def test_an_event_the_stream_ends_in_is_still_read() -> None:
    assert _read([b'data: {"a": 1}\n\ndata: {"b"']) == ['{"a": 1}', '{"b"']
