"""The lease protocol the pipeline's flights use, and the in-process implementation.

The in-process `Coalescer` makes one flight per key per process; inside that flight a
`Leases` implementation decides whether this process calls the provider or waits for
another process's answer. Use:

    claim = await leases.claim(skey, decode)   # decode(stored bytes) -> entry, None if unusable
    if claim.found is not None:
        return claim.found                     # stored meanwhile, here or by another process
    async with claim:                          # a lease is renewed while the body runs;
        ...call the provider...
        await claim.fill(store, skey, value, ttl)  # store it (and release, in one round trip)
    # leaving releases a lease not released yet and wakes the waiters

A flight whose provider call failed tells its claim so (`share_failure`): its waiters in
other processes are handed the same error with their wake-up (`Claim.error`: status, body,
`Retry-After`) and answer it, or fall back, as its waiters in this process do, instead of
calling the failing upstream again the moment the lease is released (a 429 answered by one
more call per waiting process). Nothing is stored: a request after the failure calls again.
Not shared (`shared`): failures about the holder's own credentials (401, 403: another
process may be configured with another key, so its waiters take over), and anything that
is not a provider's answer (a holder cancelled by its client going away: waiters take over).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

import orjson

from genai_api.errors import CacheUnavailable, ProviderError
from genai_api.store.base import CacheStore

T = TypeVar("T")

Decode = Callable[[bytes], T | None]
"""Stored bytes to the caller's entry; None when they are not usable (another version, too
old for the request's max-age): then the key counts as missing."""


class Claim(Generic[T]):
    """What `Leases.claim` decided: an entry was found, or this flight calls the provider.

    `waited`: the entry was stored by another process while this one waited (COALESCED).
    `failure`: why the backend failed, if it did: then coalescing is in-process only and
    the answer is BYPASS (`degraded`). `error`: the call of the process this one waited for
    failed with it: this flight fails the same way (and falls back, if its model does).
    """

    def __init__(
        self,
        found: T | None = None,
        *,
        waited: bool = False,
        failure: str | None = None,
        error: ProviderError | None = None,
    ) -> None:
        self.found = found
        self.waited = waited
        self.failure = failure
        self.error = error

    @property
    def degraded(self) -> bool:
        return self.failure is not None

    async def fill(self, store: CacheStore, key: str, value: bytes, ttl: float) -> None:
        """Store the answer for `key` (raises `CacheUnavailable` when the store fails)."""
        await store.set(key, value, ttl)

    async def send_fill(
        self,
        store: CacheStore,
        key: str,
        value: bytes,
        ttl: float,
        failed: Callable[[str], None],
    ) -> None:
        """`fill`, for an answer that may go out before the store confirms it: once this
        returns, the store has the write, so nothing a client does after seeing the answer
        reaches the store before it. A failure known only later is reported to `failed`
        (the reason) instead of raised. Here: `fill` itself."""
        await self.fill(store, key, value, ttl)

    def share_failure(self, error: ProviderError) -> None:
        """This flight's call failed with `error` (one `shared` allows): waiters elsewhere
        are to get `error` rather than call again. Here (one process) there are none: the
        flight's waiters in this process share its exception already (`Coalescer`)."""
        return None

    async def __aenter__(self) -> Claim[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None


FAILED = b"!"  # what a wake-up carrying a failure (not an entry) starts with

OWN_CREDENTIALS = frozenset({401, 403})
"""Statuses about the calling process's own upstream key, not about the request."""


def shared(error: ProviderError) -> bool:
    """May `error`, a holder's failed call, answer its waiters in other processes too? Yes,
    unless it is about the holder's own credentials: another replica may hold another key."""
    return error.status_code not in OWN_CREDENTIALS


def failure_bytes(error: ProviderError) -> bytes:
    """`error` as a wake-up carries it (entries are JSON objects: they never start with "!")."""
    doc = {
        "status": error.status_code,
        "error": error.envelope()["error"],
        "headers": error.headers,
    }
    return FAILED + orjson.dumps(doc)


def failure_from(carried: bytes) -> ProviderError | None:
    """The error a wake-up carried, None when it carried an entry (or anything else)."""
    if not carried.startswith(FAILED):
        return None
    try:
        doc = orjson.loads(carried[1:])
        return ProviderError(
            "The upstream failed in another process.",
            status_code=int(doc["status"]),
            body=dict(doc["error"]),
            headers={str(k): str(v) for k, v in dict(doc["headers"]).items()},
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


class Leases(Protocol):
    @property
    def state(self) -> str:
        """How far coalescing reaches right now, for `/readyz`."""
        ...

    claim_reads: bool
    """The claim reads the entry in the round trip that takes the lease, so a lookup before
    it would be a round trip of its own for nothing: a request looks only at what `peek`
    holds in this process, and otherwise goes straight to its flight's claim."""

    async def claim(self, key: str, decode: Decode[T], *, slide_ms: int = 0) -> Claim[T]:
        """Found entry, or the right to call the provider for storage key `key`; a found
        entry's TTL is set back to what it was stored with, at most `slide_ms` (0: kept)."""
        ...

    def peek(self, key: str) -> bytes | None:
        """The entry for `key` if this process holds it (an L1), without a round trip."""
        ...

    async def sweep(self, rest: str) -> int:
        """Remove leases of keys matching ``{ns}:<kind>:<rest>`` whose holder died (see
        `RedisLeases.sweep`); `DELETE /v1/cache` calls it. Answers how many went."""
        ...

    def start(self) -> None: ...

    async def aclose(self) -> None: ...


class LocalLeases:
    """One process (memory backend): re-check the cache, then the flight calls the provider."""

    state = "process"
    claim_reads = False  # an in-process store: the request's own lookup is as cheap

    def __init__(self, store: CacheStore) -> None:
        self.store = store

    def peek(self, key: str) -> bytes | None:
        return None

    async def claim(self, key: str, decode: Decode[T], *, slide_ms: int = 0) -> Claim[T]:
        try:
            # A flight that just landed may have stored this key since the request's lookup.
            store = self.store
            raw = await (store.get(key, slide_ms=slide_ms) if slide_ms else store.get(key))
        except CacheUnavailable as exc:
            return Claim(failure=exc.message)
        return Claim(decode(raw) if raw is not None else None)

    async def sweep(self, rest: str) -> int:
        return 0  # no lease outlives its process here

    def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
