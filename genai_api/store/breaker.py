"""A small circuit breaker: after several consecutive backend failures, stop trying it for a
moment, then let one background probe find out whether it is back.

    closed --(`threshold` consecutive failures, or `trip()`)--> open
    open --(cool-down over: `probe_due()` once)--> probing --(probe fails: `trip()`)--> open
    probing or open --(`reset()`: a probe or health check answered)--> closed

Why several failures: one timeout is as often the worker's own event loop lagging (a
CPU-starved process) as a sick Redis, and opening on it loses caching and fleet coalescing
for a whole cool-down. Failures of operations that were in flight together count once: a
stall makes all of them time out at the same moment, so a burst of fifty requests on a
lagging worker is one failure, not fifty. A success ends the streak.

Why a probe of its own: no request carries it, so once the breaker is open a hung backend
costs requests nothing (the probe pays the timeout, in the background), and only one probe
runs at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    def __init__(
        self, cooldown: float, threshold: int = 1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.cooldown = cooldown
        self.threshold = max(1, threshold)
        self.now = clock
        self.failures = 0  # every failure ever recorded (for tests and debugging)
        self._open = False
        self._retry_at = 0.0
        self._probing = False
        self._streak = 0
        self._counted_at = float("-inf")  # a failure of an op started before this is a twin

    @property
    def is_open(self) -> bool:
        return self._open

    def success(self) -> None:
        self._streak = 0

    def failure(self, started: float) -> None:
        """An operation started at `started` (by `now()`) failed."""
        self.failures += 1
        if started < self._counted_at:
            return  # in flight together with a failure already counted: the same stall
        self._counted_at = self.now()
        self._streak += 1
        if self._streak >= self.threshold:
            self.trip()

    def trip(self) -> None:
        """Open now, for one cool-down (a failed probe or health check, or too many failures)."""
        self._open = True
        self._probing = False
        self._retry_at = self.now() + self.cooldown

    def reset(self) -> None:
        """Close: the backend answered a probe or a health check."""
        self._open = False
        self._probing = False
        self._streak = 0

    def probe_due(self) -> bool:
        """True once per cool-down of an open breaker: the caller starts the probe."""
        if not self._open or self._probing or self.now() < self._retry_at:
            return False
        self._probing = True
        return True
