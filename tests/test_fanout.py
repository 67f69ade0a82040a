"""The live chunk feed: late followers start from the first chunk, errors come after it."""

from __future__ import annotations

import asyncio

import pytest

from genai_api.errors import ProviderError
from genai_api.flights.fanout import Feed


async def test_followers_get_every_chunk_live_and_late_ones_from_the_start() -> None:
    feed = Feed()
    early: list[int] = []

    async def follow(into: list[int]) -> None:
        async for chunk in feed.follow():
            into.append(chunk["n"])

    first = asyncio.create_task(follow(early))
    await asyncio.sleep(0)  # the follower is now waiting for a chunk
    feed.append({"n": 1})
    for _ in range(3):
        await asyncio.sleep(0)
    assert early == [1]  # delivered before the feed ended
    late: list[int] = []
    second = asyncio.create_task(follow(late))
    feed.append({"n": 2})
    feed.close()
    await asyncio.gather(first, second)
    assert early == late == [1, 2]


async def test_error_is_raised_after_the_chunks_already_sent() -> None:
    feed = Feed()
    feed.append({"n": 1})
    feed.close(ProviderError("boom", status_code=502))
    seen = []
    with pytest.raises(ProviderError, match="boom"):
        async for chunk in feed.follow():
            seen.append(chunk)
    assert seen == [{"n": 1}]


async def test_ready_waits_for_the_first_chunk_or_the_end() -> None:
    feed = Feed()
    waiting = asyncio.create_task(feed.ready())
    await asyncio.sleep(0)
    assert not waiting.done()
    feed.close()
    await waiting
    feed.append({"n": 1})  # after the end: ignored
    assert feed.chunks == []
