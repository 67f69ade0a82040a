"""A small bounded LRU of raw entry bytes, each held for a few seconds at most (the L1).

Why bytes and not decoded entries: the pipeline decodes what any store answers, so an L1
answer takes exactly the path a Redis answer takes (same headers, Age, savings, stats).
Why a short hold: the L1 cannot see what happens in Redis out of band (a `redis-cli DEL`, a
`redis-cli SET`); holding an entry at most `hold_seconds` after it was read from Redis bounds
how long such a change goes unseen, while a hot key still answers from memory nearly always.
An entry is never held past its expiry in Redis (the reader passes the TTL it read with it).

Bounds: `max_bytes` in total (values plus keys); an entry over `max_bytes // 64` is never held,
so one big streamed entry cannot push out dozens of ordinary ones. `max_bytes=0` disables it.

The epoch makes invalidation safe against reads in flight: a reader takes `epoch` before its
Redis GET and `put`s with it; every `clear` or `discard` bumps it, so a value read before an
invalidation is dropped instead of being inserted after it.

    epoch = l1.epoch
    raw = await redis.get(key)          # an invalidation may land meanwhile...
    l1.put(key, raw, epoch)             # ...then this is a no-op
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

ENTRY_SHARE = 64  # an entry may take at most 1/64 of the L1


class NearCache:
    def __init__(
        self,
        max_bytes: int,
        hold_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_bytes = max(0, max_bytes)
        self.max_entry_bytes = self.max_bytes // ENTRY_SHARE
        self.hold_seconds = hold_seconds
        self.enabled = self.max_bytes > 0 and hold_seconds > 0
        self.now = clock
        self.size = 0  # bytes held: values plus keys
        self.epoch = 0
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> bytes | None:
        """The held value of `key`, unless it was held longer than `hold_seconds`."""
        found = self._entries.get(key)
        if found is None:
            return None
        value, until = found
        if self.now() >= until:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: str, value: bytes, epoch: int, ttl: float | None = None) -> bool:
        """Hold `value` (read from Redis when the epoch was `epoch`, with `ttl` seconds left
        there, None: no expiry) for `hold_seconds` or until it expires in Redis, whichever
        comes first; False when it is not held: disabled, too big, about to expire, or an
        invalidation happened since that read."""
        cost = len(value) + len(key)
        if not self.enabled or epoch != self.epoch or cost > self.max_entry_bytes:
            return False
        hold = self.hold_seconds if ttl is None else min(self.hold_seconds, ttl)
        if hold <= 0:
            return False
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (value, self.now() + hold)
        self.size += cost
        while self.size > self.max_bytes:
            oldest, (old, _) = self._entries.popitem(last=False)
            self.size -= len(old) + len(oldest)
        return True

    def discard(self, key: str) -> None:
        """Forget `key` (it changed); reads in flight for any key will not insert."""
        self.epoch += 1
        if key in self._entries:
            self._drop(key)

    def clear(self) -> None:
        """Forget everything; reads in flight will not insert."""
        self.epoch += 1
        self._entries.clear()
        self.size = 0

    def _drop(self, key: str) -> None:
        value, _ = self._entries.pop(key)
        self.size -= len(value) + len(key)
