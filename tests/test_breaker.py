"""The circuit breaker on a fake clock: when it opens, what counts, and its one probe."""

from __future__ import annotations

from genai_api.store.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(threshold: int = 3, cooldown: float = 1.0) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    return CircuitBreaker(cooldown, threshold, clock=clock), clock


def fail_once(b: CircuitBreaker, clock: Clock) -> None:
    """One operation that starts now and fails a moment later."""
    started = clock.now
    clock.now += 0.2
    b.failure(started)


def test_opens_after_threshold_consecutive_failures() -> None:
    b, clock = breaker(threshold=3)
    fail_once(b, clock)
    fail_once(b, clock)
    assert not b.is_open
    fail_once(b, clock)
    assert b.is_open


def test_a_success_ends_the_streak() -> None:
    b, clock = breaker(threshold=2)
    fail_once(b, clock)
    b.success()
    fail_once(b, clock)
    assert not b.is_open
    fail_once(b, clock)
    assert b.is_open


def test_failures_of_operations_in_flight_together_count_once() -> None:
    b, clock = breaker(threshold=2)
    started = clock.now
    clock.now += 0.2  # one stall: fifty operations time out together
    for _ in range(50):
        b.failure(started)
    assert not b.is_open and b.failures == 50
    fail_once(b, clock)  # an operation started after that stall: a second failure
    assert b.is_open


def test_threshold_one_opens_on_the_first_failure() -> None:
    b, clock = breaker(threshold=1)
    fail_once(b, clock)
    assert b.is_open


def test_one_probe_per_cool_down_then_reset_closes() -> None:
    b, clock = breaker(cooldown=1.0)
    b.trip()
    assert b.is_open and not b.probe_due()  # cooling down
    clock.now += 1.0
    assert b.probe_due()
    assert not b.probe_due()  # one probe at a time
    b.trip()  # the probe failed: another cool-down
    assert not b.probe_due()
    clock.now += 1.0
    assert b.probe_due()
    b.reset()  # the probe answered
    assert not b.is_open and not b.probe_due()


def test_reset_forgets_the_streak() -> None:
    b, clock = breaker(threshold=2)
    fail_once(b, clock)
    b.reset()
    fail_once(b, clock)
    assert not b.is_open
