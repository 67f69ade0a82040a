"""At most one Redis failure per request: after the first, the rest of the request skips Redis.

The breaker opens only after several consecutive failures (one timeout is often the worker's
own stall, not Redis). Until it opens, a request whose Redis hangs would pay `REDIS_TIMEOUT`
for each of its operations in turn: lookup, lease, store, release. So each request carries a
`Budget`: its first failed Redis operation spends it, and every later one raises
`CacheUnavailable` at once (BYPASS), as if the breaker were open for this request alone.

The pipeline begins a budget as each request enters it (`begin()`). The flights a request
starts are tasks, which copy its context, so they share its budget. Background work (lease
renewal, release retries) runs in a `detached()` context: no budget, only the breaker.

    begin()                     # Pipeline.run: a fresh budget for this request
    await store.get(key)        # a timeout here spends it...
    await store.set(key, ...)   # ...so this raises CacheUnavailable without trying

A write a full Redis refused (`WriteRefused`, OOM at `maxmemory`) spends nothing: Redis
answered, and the request's reads go on (`refusals.py`).

On a Redis Cluster a failure spends the budget on its node only (`nodes`): the request's
keys on healthy nodes are still read and written (an embedding batch spans every node).
"""

from __future__ import annotations

import contextvars


class Budget:
    __slots__ = ("nodes", "spent")

    def __init__(self) -> None:
        self.spent = False
        self.nodes: set[str] | None = None  # cluster nodes that failed this request


_current: contextvars.ContextVar[Budget | None] = contextvars.ContextVar(
    "genai_api_redis_budget", default=None
)


def begin() -> Budget:
    """A fresh budget for the request running in this context (and the tasks it starts)."""
    budget = Budget()
    _current.set(budget)
    return budget


def current() -> Budget | None:
    """The running request's budget; None outside a request (no per-request limit)."""
    return _current.get()


def detached() -> contextvars.Context:
    """A copy of this context without a budget, for background tasks a request starts."""
    context = contextvars.copy_context()
    context.run(_current.set, None)
    return context
