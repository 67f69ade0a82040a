"""The live chunk log of one streamed provider call, read by any number of followers.

The flight appends each chunk the moment it arrives and closes the feed once, cleanly or
with an error. Every follower reads from chunk 0, so one that joins late still gets the
whole stream, and all of them get each new chunk as soon as it is appended: one provider
call, fanned out live. The feed also counts who is still following, so the pipeline can
tell when the last interested client has gone.

    >>> async for chunk in feed.follow():  # doctest: +SKIP
    ...     relay(chunk)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from genai_api.errors import GatewayError


class Feed:
    def __init__(self) -> None:
        self.chunks: list[dict[str, Any]] = []
        self.closed = False
        self.error: GatewayError | None = None
        self.flight: str | None = None  # the coalescer key, when the call is a shared flight
        self.bypassed = False  # the flight could not reach the cache (its answer: BYPASS)
        self.followers = 0
        self._changed = asyncio.Event()

    def append(self, chunk: dict[str, Any]) -> None:
        if self.closed:
            return
        self.chunks.append(chunk)
        self._wake()

    def close(self, error: GatewayError | None = None) -> None:
        """End the feed; the first close wins (a failure after a clean end changes nothing)."""
        if self.closed:
            return
        self.closed = True
        self.error = error
        self._wake()

    def _wake(self) -> None:
        # Followers wait on the event they saw; a fresh one is armed for the next change.
        self._changed.set()
        self._changed = asyncio.Event()

    async def ready(self) -> None:
        """Wait for the first chunk or the end, whichever comes first."""
        while not self.chunks and not self.closed:
            await self._changed.wait()

    async def follow(self) -> AsyncIterator[dict[str, Any]]:
        """Every chunk from the first, live; raises the feed's error after the last chunk."""
        position = 0
        while True:
            while position < len(self.chunks):
                yield self.chunks[position]
                position += 1
            if self.closed:
                break
            await self._changed.wait()
        if self.error is not None:
            raise self.error
