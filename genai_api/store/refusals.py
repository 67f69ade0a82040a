"""Writes a full Redis refused: told apart from failures, counted, and shown on `/readyz`.

Why: under `maxmemory` with `noeviction` (or a volatile policy with nothing volatile left to
evict) Redis answers every write with `OOM command not allowed when used memory >
'maxmemory'` and still serves every read. Counted as a failure, that error opened the
breaker and the request's budget, so reads were skipped too: in an SRE drill the hit ratio
fell from ~27 % to 5.8 % while Redis was answering fine. So a store classifies a failure in
its exception path only (`refused`, nothing on a hit's path): a refused write raises
`WriteRefused` (the caller answers BYPASS, as for any `CacheUnavailable`), ends the
breaker's failure streak instead of adding to it, spends no budget, and is counted here.

What Redis 7 refuses (checked against 7.0): every command flagged `denyoom` (SET, HINCRBY,
LPUSHX...), and, inside a script without a shebang, the first such call (the reads before it
run, so the claim script's read-only branch, a hit, is still served); a script with a shebang
and without `no-writes` or `allow-oom` is refused before it runs. DEL, PEXPIRE and PUBLISH
are never refused: releasing a lease or renewing one works on a full Redis. redis-py raises
`OutOfMemoryError` (a `ResponseError`) for both; a pipeline raises its first error.

`Refusals` remembers, per part of the backend (the store's name on one server, a primary's
`host:port` on a cluster), when a write was last refused: `full()` names those refused
within `REFUSED_SECONDS`. `/readyz` then answers 200 `degraded` with the reason `cache_full`,
and asks the store to try a write that changes nothing (`PROBE`), so it turns `ready`
again at the first probe after memory was freed, not `REFUSED_SECONDS` later.

    try:
        await op()
    except FAILURES as exc:
        if refused(exc):
            refusals.refused(name)
            raise WriteRefused(...) from exc
"""

from __future__ import annotations

import time
from collections.abc import Callable

from redis.exceptions import OutOfMemoryError, ResponseError

REFUSED_SECONDS = 30.0  # a part of the backend counts as full this long after a refused write
OOM_TEXT = "command not allowed when used memory"
# A write that changes nothing: LPUSHX pushes only onto an existing list, and this key is
# never created, but the command is `denyoom`, so a full Redis refuses it like any write.
PROBE = "genai-api:oom-probe:never-created"


def refused(exc: BaseException) -> bool:
    """Whether `exc` is Redis refusing a write for want of memory (not a failure of Redis)."""
    if isinstance(exc, OutOfMemoryError):
        return True
    # Older clients, and errors passed through a cluster pipeline, keep only the text.
    return isinstance(exc, ResponseError) and OOM_TEXT in str(exc)


class Refusals:
    """Writes refused so far (`count`), and where one was refused lately (`full`).

    `listener` is told of each refused write (the Prometheus counter, set by the gateway)."""

    def __init__(
        self, seconds: float = REFUSED_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.seconds = seconds
        self.now = clock
        self.count = 0
        self.listener: Callable[[], None] | None = None
        self._last: dict[str, float] = {}  # part of the backend -> when it last refused

    def refused(self, where: str) -> None:
        """A write to `where` was refused: counted, and `where` is full for a while."""
        self.count += 1
        self._last[where] = self.now()
        if self.listener is not None:
            self.listener()

    def still(self, where: str) -> None:
        """A probe was refused: `where` is still full (not a write of the gateway's, so not
        counted)."""
        self._last[where] = self.now()

    def cleared(self, where: str) -> None:
        """A probe write to `where` was accepted: it has room again."""
        self._last.pop(where, None)

    def full(self) -> tuple[str, ...]:
        """The parts of the backend that refused a write within `seconds`."""
        if not self._last:
            return ()
        since = self.now() - self.seconds
        for where in [w for w, at in self._last.items() if at < since]:
            del self._last[where]
        return tuple(sorted(self._last))
