"""The live side of streamed flights: which flight has a feed, who follows it, and what
happens when the last follower walks away.

The pipeline owns one `Relay`. A streamed flight's `Feed` is attached under the flight's
key while it runs, so a streamed request joining the flight follows it live from the first
chunk. Every follower (and every non-streamed waiter of a streamed flight) is counted; when
the last one leaves early, the call goes on and is cached (`STREAM_FINISH_ON_DISCONNECT`,
the default), or is cancelled. A BYPASS stream, which nobody else could use, is always
cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Coroutine
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from genai_api.apis.base import Api, View
from genai_api.flights.coalesce import Coalescer
from genai_api.flights.fanout import Feed
from genai_api.savings.accounting import CacheStatus

if TYPE_CHECKING:
    from genai_api.pipeline.answers import Outcome

T = TypeVar("T")
Chunks = AsyncGenerator[dict[str, Any], None]


@dataclass(slots=True)
class Streamed:
    """A streamed answer: its API (how it is framed), its cache status, known before the first
    byte, and its chunks."""

    api: Api
    status: CacheStatus
    key: str
    chunks: Chunks  # as the client gets them; raises a GatewayError if the stream fails
    outcome: Outcome | None = None  # when replayed from a finished entry (age, savings)
    fallback: str | None = None  # the fallback model that answered (`X-Upstream-Model`)


class Relay:
    def __init__(self, coalescer: Coalescer[Any], *, finish_on_disconnect: bool) -> None:
        self.coalescer = coalescer
        self.finish_on_disconnect = finish_on_disconnect
        self._feeds: dict[str, Feed] = {}
        self._own: set[asyncio.Task[Any]] = set()

    def attach(self, flight: str, feed: Feed, task: asyncio.Task[Any]) -> None:
        """Make `feed` the live feed of the flight `flight` until its task is done."""
        feed.flight = flight
        self._feeds[flight] = feed
        task.add_done_callback(partial(self._detach, flight, feed))

    def _detach(self, flight: str, feed: Feed, _task: object) -> None:
        if self._feeds.get(flight) is feed:
            del self._feeds[flight]

    def feed_of(self, flight: str) -> Feed | None:
        """The live feed of a running streamed flight (None for a non-streamed one)."""
        return self._feeds.get(flight)

    def spawn(self, call: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """A stream of one request's own (BYPASS), kept referenced until it ends."""
        task = asyncio.create_task(call)
        self._own.add(task)
        task.add_done_callback(self._reap)
        return task

    async def aclose(self) -> None:
        """Cancel the BYPASS streams still running at shutdown."""
        for task in list(self._own):
            task.cancel()
        await asyncio.gather(*self._own, return_exceptions=True)

    def _reap(self, task: asyncio.Task[Any]) -> None:
        self._own.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: its follower saw the error through the feed

    async def follow(self, feed: Feed, task: asyncio.Task[Any], view: View) -> Chunks:
        """The feed's chunks as this client gets them (`view`), live; leaving is counted
        however it happens (end, error, or the client going away)."""
        finished = False
        try:
            async for chunk in feed.follow():
                out = view(chunk)
                if out is not None:
                    yield out
            finished = True
        finally:
            self.leave(feed, task, finished=finished or feed.error is not None)

    def leave(self, feed: Feed, task: asyncio.Task[Any], *, finished: bool) -> None:
        """A follower is done; the last one to walk away early may cancel the call."""
        feed.followers -= 1
        if finished or feed.followers > 0 or task.done():
            return
        if feed.flight is None:
            task.cancel()
        elif not self.finish_on_disconnect:
            self.coalescer.cancel(feed.flight)


async def replay(chunks: list[dict[str, Any]], view: View) -> Chunks:
    """Stored (or synthesized) chunks as this client gets them (`view`)."""
    for chunk in chunks:
        out = view(chunk)
        if out is not None:
            yield out
