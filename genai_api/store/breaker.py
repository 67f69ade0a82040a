"""A tiny circuit breaker: after a backend failure, stop trying it for a moment.

A sick Redis then costs one short timeout per `cooldown`, not one per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    def __init__(self, cooldown: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.cooldown = cooldown
        self._clock = clock
        self._open_until = 0.0
        self.failures = 0

    @property
    def is_open(self) -> bool:
        return self._clock() < self._open_until

    def trip(self) -> None:
        self.failures += 1
        self._open_until = self._clock() + self.cooldown

    def reset(self) -> None:
        self._open_until = 0.0
