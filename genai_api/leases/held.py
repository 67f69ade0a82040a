"""The lease this process holds for one key while its flight calls the provider.

`RedisLeases.claim` hands it out when the claim script took the lease: entering it starts
the lease's renewals (one task per process renews every lease it holds), `fill`/`send_fill`
store the answer and release the lease in one round trip, and leaving releases a lease not
released yet, carrying the call's failure to the waiters when it is one they share
(`Claim.share_failure`). Apart from `RedisLeases` so that module keeps to the protocol
itself: scripts, claims, renewals and wake-ups.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from genai_api.errors import ProviderError
from genai_api.leases.base import Claim
from genai_api.store.base import CacheStore

if TYPE_CHECKING:
    from genai_api.leases.redis import RedisLeases

T = TypeVar("T")


class HeldLease(Claim[T]):
    """This process holds the lease: renewed while the body runs, released by `fill` or,
    failing that, when the body ends."""

    def __init__(self, leases: RedisLeases, key: str, lock: str, token: str) -> None:
        super().__init__()
        self._leases = leases
        self.key, self.lock, self.token = key, lock, token
        self.released = False
        self._failed: ProviderError | None = None

    async def fill(self, store: CacheStore, key: str, value: bytes, ttl: float) -> None:
        """Store, release and wake the waiters in one round trip (on the leases' Redis, which
        is `store`'s). Renewals stop first: one that ran after the fill would find the lease
        gone and take it again."""
        self._leases.drop(self.lock, self.token)
        await self._leases.fill(key, self.lock, self.token, value, ttl)
        self.released = True

    async def send_fill(
        self,
        store: CacheStore,
        key: str,
        value: bytes,
        ttl: float,
        failed: Callable[[str], None],
    ) -> None:
        """`fill`, its reply read in the background (`RedisLeases.send_fill`)."""
        self._leases.drop(self.lock, self.token)
        await self._leases.send_fill(key, self.lock, self.token, value, ttl, failed)
        self.released = True  # by the script, or by the background read when that fails

    def share_failure(self, error: ProviderError) -> None:
        self._failed = error  # handed to the waiters when the lease is released

    async def __aenter__(self) -> HeldLease[T]:
        self._leases.hold(self.lock, self.token)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._leases.drop(self.lock, self.token)
        if not self.released:
            # A failed call, or no store: waiters wake and take the lease over (or, given the
            # call's failure, answer it).
            await self._leases.release(self.key, self.lock, self.token, self._failed)
            self.released = True
