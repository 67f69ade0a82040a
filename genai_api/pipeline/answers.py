"""What the pipeline answers (`Outcome`) and how answers are counted, in one place.

Tokens and cost count as saved on HIT/COALESCED and as spent on MISS/BYPASS. The requests
that joined a flight are counted together when it lands (`follow`): a burst of 50 identical
requests costs one `Accounting.record`, not 49 more.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal

from genai_api.entry import Entry
from genai_api.pipeline.call import Call
from genai_api.savings.accounting import SAVED, Accounting, CacheStatus
from genai_api.savings.money import to_pico

Flight = asyncio.Task[tuple[Entry, CacheStatus]]


@dataclass(slots=True)
class _Followers:
    """The non-streamed requests that joined one flight (not its starter) and still wait.

    They share its key, so one `call` of theirs stands for all in the accounting."""

    call: Call
    waiting: int = 0


@dataclass(slots=True)
class Outcome:
    status: CacheStatus
    key: str
    entry: Entry
    saved_tokens: int = 0
    saved_cost: Decimal | None = None
    similarity: float | None = None  # a SEMANTIC-HIT's: to the prompt its entry answered
    fallback: str | None = None  # the fallback model that answered (`X-Upstream-Model`)

    @property
    def from_cache(self) -> bool:
        """Answered without a provider call of its own (HIT, COALESCED, SEMANTIC-HIT)."""
        return self.status in SAVED


class Answers:
    def __init__(self, accounting: Accounting) -> None:
        self.accounting = accounting
        self.followers: dict[Flight, _Followers] = {}

    def follow(self, call: Call, task: Flight) -> _Followers:
        """Count `call` among the non-streamed requests waiting on `task` (see `_Followers`)."""
        followers = self.followers.get(task)
        if followers is None:
            followers = self.followers[task] = _Followers(call)
            task.add_done_callback(self._count_followers)
        followers.waiting += 1
        return followers

    def _count_followers(self, task: Flight) -> None:
        """The flight landed: count every request still waiting on it at once (`joined`).

        Runs as the flight's done callback, before any waiter resumes: 49 waiters of a burst
        cost one `Accounting.record`, not 49 (as relayed streams, they are counted when the
        flight lands). A failed flight answers nobody and counts nothing.
        """
        followers = self.followers.pop(task, None)
        if followers is None or followers.waiting <= 0 or task.cancelled():
            return
        if task.exception() is not None:
            return
        entry, status = task.result()
        prompt_tokens, completion_tokens, cost = _priced(followers.call, entry)
        self._record(
            followers.call,
            joined(status),
            prompt_tokens,
            completion_tokens,
            cost,
            followers.waiting,
        )

    def answer(self, call: Call, status: CacheStatus, entry: Entry) -> Outcome:
        """The outcome of one answer, counted."""
        prompt_tokens, completion_tokens, cost = _priced(call, entry)
        self._record(call, status, prompt_tokens, completion_tokens, cost)
        return _outcome(call, status, entry, prompt_tokens + completion_tokens, cost)

    def uncounted(self, call: Call, status: CacheStatus, entry: Entry) -> Outcome:
        """The outcome of an answer counted elsewhere (`_count_followers`)."""
        prompt_tokens, completion_tokens, cost = _priced(call, entry)
        return _outcome(call, status, entry, prompt_tokens + completion_tokens, cost)

    def _record(
        self,
        call: Call,
        status: CacheStatus,
        prompt_tokens: int,
        completion_tokens: int,
        cost: Decimal,
        count: int = 1,
    ) -> None:
        """Count `count` identical answers. Tokens and cost count as saved on HIT/COALESCED,
        as spent on MISS/BYPASS; the cost of one answer is rounded to picodollars before it
        is multiplied, so the stats add up to the sum of the answers' headers."""
        if count != 1:
            cost = Decimal(to_pico(cost) * count).scaleb(-12)
        self.accounting.record(
            call.model.name,
            status,
            prompt_tokens=prompt_tokens * count,
            completion_tokens=completion_tokens * count,
            cost=cost,
            count=count,
        )


def joined(landed: CacheStatus) -> CacheStatus:
    """What a request that joined a flight (not its starter) was answered with, given what
    the flight landed with: HIT when the flight found the entry stored, COALESCED when it
    waited for a provider call (its own, or another process's)."""
    return CacheStatus.HIT if landed is CacheStatus.HIT else CacheStatus.COALESCED


def _outcome(call: Call, status: CacheStatus, entry: Entry, tokens: int, cost: Decimal) -> Outcome:
    outcome = Outcome(status, call.key, entry)
    if outcome.from_cache:
        outcome.saved_tokens = tokens
        outcome.saved_cost = cost
    return outcome


def _priced(call: Call, entry: Entry) -> tuple[int, int, Decimal]:
    """(prompt tokens, completion tokens, cost) of answering `call` with `entry`."""
    prompt_tokens, completion_tokens = entry.tokens()
    return prompt_tokens, completion_tokens, call.model.cost(prompt_tokens, completion_tokens)
