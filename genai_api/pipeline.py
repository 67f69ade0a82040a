"""The one request pipeline: key → lookup → coalesce → provider → store → account.

Every endpoint (chat, completions, prompt templates, and embeddings per input) builds a
`Call` and hands it here; endpoints only translate HTTP to a `Call` and an `Outcome` back.
The cache fails open: a store error is logged and counted, and the request goes on to the
provider with `X-Cache: BYPASS`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from genai_api.accounting import Accounting, CacheStatus
from genai_api.coalesce import Coalescer
from genai_api.controls import CacheControls
from genai_api.entry import Entry
from genai_api.errors import CacheUnavailable, ProviderTimeout
from genai_api.keys import request_key, storage_key
from genai_api.leases import Claim, Leases, LocalLeases
from genai_api.models_table import ModelInfo
from genai_api.providers.base import Provider
from genai_api.store.base import CacheStore

log = logging.getLogger("genai_api.pipeline")

JITTER = 0.10


@dataclass(slots=True)
class Call:
    """One request as the pipeline sees it."""

    endpoint: str  # public name, for logs and metrics: "chat.completions", "completions"
    path: str  # upstream path
    model: ModelInfo
    body: dict[str, Any]  # exactly what is sent upstream
    controls: CacheControls
    key: str  # the X-Cache-Key
    skey: str  # where the entry lives in the store
    cacheable: bool


@dataclass(slots=True)
class Outcome:
    status: CacheStatus
    key: str
    entry: Entry
    saved_tokens: int = 0
    saved_cost: Decimal | None = None

    @property
    def from_cache(self) -> bool:
        """Answered without a provider call of its own (HIT or COALESCED)."""
        return self.status in (CacheStatus.HIT, CacheStatus.COALESCED)


_KINDS = {
    "chat.completions": ("chat", "/chat/completions"),
    "completions": ("cmpl", "/completions"),
}


def is_nondeterministic(body: dict[str, Any]) -> bool:
    """`temperature` > 0 (the provider default is 1) with no `seed`."""
    temperature = body.get("temperature", 1)
    return body.get("seed") is None and isinstance(temperature, int | float) and temperature > 0


class Pipeline:
    def __init__(
        self,
        *,
        store: CacheStore,
        provider: Provider,
        accounting: Accounting,
        namespace: str,
        default_ttl: int,
        max_ttl: int,
        cache_nondeterministic: bool,
        upstream_concurrency: int,
        upstream_timeout: float,
        leases: Leases | None = None,
    ) -> None:
        self.store = store
        self.provider = provider
        self.accounting = accounting
        self.namespace = namespace
        self.default_ttl = default_ttl
        self.max_ttl = max_ttl
        self.cache_nondeterministic = cache_nondeterministic
        self.upstream_timeout = upstream_timeout
        self.coalescer: Coalescer[tuple[Entry, CacheStatus]] = Coalescer()
        self.leases: Leases = leases or LocalLeases()
        self._upstream = asyncio.Semaphore(upstream_concurrency)
        self.in_flight = 0

    def prepare(
        self,
        endpoint: str,
        body: dict[str, Any],
        *,
        model: ModelInfo,
        tenant: str,
        controls: CacheControls,
        prompt: str | None = None,
    ) -> Call:
        kind, path = _KINDS[endpoint]
        key = request_key(endpoint, body, tenant=tenant)
        cacheable = self.cache_nondeterministic or not is_nondeterministic(body)
        return Call(
            endpoint=endpoint,
            path=path,
            model=model,
            body=body,
            controls=controls,
            key=key,
            skey=storage_key(self.namespace, kind, tenant, model.name, key, prompt),
            cacheable=cacheable,
        )

    async def run(self, call: Call) -> Outcome:
        """Answer one non-streamed call, from the cache when it may."""
        if call.controls.bypass or not call.cacheable:
            return self._answer(call, CacheStatus.BYPASS, await self._provider_call(call))
        if call.controls.read:
            try:
                entry = await self._lookup(call)
            except CacheUnavailable as exc:
                self._cache_failed(call, exc)
            else:
                if entry is not None:
                    return self._answer(call, CacheStatus.HIT, entry)
        # A no-cache request must not be answered by a flight that re-read the cache.
        flight = call.skey if call.controls.read else call.skey + "#fresh"
        (entry, status), started = await self.coalescer.run(flight, lambda: self._fill(call))
        return self._answer(call, status if started else CacheStatus.COALESCED, entry)

    async def _lookup(self, call: Call) -> Entry | None:
        raw = await self.store.get(call.skey)
        if raw is None:
            return None
        entry = Entry.decode(raw)
        if entry is None:
            return None
        max_age = call.controls.max_age
        if max_age is not None and entry.age() > max_age:
            return None
        return entry

    async def _fill(self, call: Call) -> tuple[Entry, CacheStatus]:
        """The body of a flight: claim the key fleet-wide (lease + re-check), call the
        provider once, store the answer; leaving the claim releases the lease."""
        claim: Claim[Entry] = Claim()
        if call.controls.read:  # a no-cache request must not wait for someone else's answer
            claim = await self.leases.claim(call.skey, lambda: self._lookup(call))
            if claim.found is not None:
                return claim.found, CacheStatus.COALESCED if claim.waited else CacheStatus.HIT
        status = CacheStatus.BYPASS if claim.degraded else CacheStatus.MISS
        async with claim:
            entry = await self._provider_call(call)
            if call.controls.write:
                try:
                    await self.store.set(call.skey, entry.encode(), self.ttl_for(call))
                except CacheUnavailable as exc:
                    self._cache_failed(call, exc)
                    status = CacheStatus.BYPASS
        return entry, status

    async def _provider_call(self, call: Call) -> Entry:
        async with self._upstream:
            self.in_flight += 1
            try:
                async with asyncio.timeout(self.upstream_timeout):
                    response = await self.provider.create(call.path, call.body)
            except TimeoutError as exc:
                raise ProviderTimeout() from exc
            finally:
                self.in_flight -= 1
        return Entry.fresh(response, model=call.model.name)

    def ttl_for(self, call: Call) -> float:
        """The requested TTL (capped), else the model's or the default with ±10 % jitter."""
        if call.controls.ttl is not None:
            return float(min(call.controls.ttl, self.max_ttl))
        base = call.model.ttl or self.default_ttl
        return float(min(base * random.uniform(1 - JITTER, 1 + JITTER), self.max_ttl))

    def _cache_failed(self, call: Call, exc: CacheUnavailable) -> None:
        log.warning("cache unavailable, bypassing: %s", exc.message)
        self.accounting.record_error(call.model.name)

    def _answer(self, call: Call, status: CacheStatus, entry: Entry) -> Outcome:
        prompt_tokens, completion_tokens = entry.tokens()
        cost = call.model.cost(prompt_tokens, completion_tokens)
        outcome = Outcome(status, call.key, entry)
        if outcome.from_cache:
            outcome.saved_tokens = prompt_tokens + completion_tokens
            outcome.saved_cost = cost
            self.accounting.record(
                call.model.name,
                status,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                cost=cost,
            )
        else:
            self.accounting.record(call.model.name, status, cost=cost)
        return outcome
