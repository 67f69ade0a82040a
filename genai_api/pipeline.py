"""The one request pipeline: key → lookup → coalesce → provider → store → account.

Every endpoint (chat, completions, prompt templates, and embeddings per input) builds a
`Call` and hands it here; endpoints only translate HTTP to a `Call` and an `Outcome` back.
The cache fails open: a store error is logged and counted, and the request goes on to the
provider with `X-Cache: BYPASS`.

`run` answers a whole completion, `run_stream` a stream; both take the same steps (`_read`,
`_join` a flight whose body is `_fill`, `answers.answer`). A flight started by a streamed request
calls the provider streaming and appends each chunk to a `Feed` that every streamed waiter
follows live; its entry keeps the chunks and the completion assembled from them, so either
kind of request hits it later.
"""

from __future__ import annotations

import asyncio
import logging
import random
from functools import partial
from typing import TYPE_CHECKING, Any

from genai_api.answers import Answers, Outcome, joined
from genai_api.call import Call, is_nondeterministic
from genai_api.controls import CacheControls
from genai_api.embeddings.runner import EmbeddingBatch, EmbeddingOutcome, EmbeddingRunner, prepare
from genai_api.embeddings.upstream import Item
from genai_api.entry import Entry, decode_shared
from genai_api.errors import CacheUnavailable, GatewayError, ProviderError, ProviderTimeout
from genai_api.flights.coalesce import Coalescer
from genai_api.flights.fanout import Feed
from genai_api.flights.relay import Relay, Streamed, replay
from genai_api.flights.shared_reads import SharedReads
from genai_api.keys import request_key, storage_key
from genai_api.leases import Claim, Leases, LocalLeases
from genai_api.models.table import ModelInfo
from genai_api.providers.base import Provider
from genai_api.savings.accounting import Accounting, CacheStatus
from genai_api.savings.tokenizer import TokenCounter
from genai_api.savings.usage import fill_usage
from genai_api.store import budget
from genai_api.store.base import CacheStore
from genai_api.streams import assemble, synthesize, upstream_body, wants_usage

if TYPE_CHECKING:
    from tiktoken import Encoding

log = logging.getLogger("genai_api.pipeline")

JITTER = 0.10


_KINDS = {
    "chat.completions": ("chat", "/chat/completions"),
    "completions": ("cmpl", "/completions"),
}


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
        stream_finish_on_disconnect: bool = True,
        leases: Leases | None = None,
        tokens: TokenCounter | None = None,
        tagged: bool = False,
    ) -> None:
        self.store = store
        self.provider = provider
        self.accounting = accounting
        self.namespace = namespace
        self.tagged = tagged  # storage keys carry hash tags (a Redis Cluster)
        self.default_ttl = default_ttl
        self.max_ttl = max_ttl
        self.cache_nondeterministic = cache_nondeterministic
        self.upstream_timeout = upstream_timeout
        self.tokens = tokens  # counts usage the provider did not send
        self.coalescer: Coalescer[tuple[Entry, CacheStatus]] = Coalescer()
        self.relay = Relay(self.coalescer, finish_on_disconnect=stream_finish_on_disconnect)
        self.leases: Leases = leases or LocalLeases(store)
        self._upstream = asyncio.Semaphore(upstream_concurrency)
        self.in_flight = 0
        self.reads = SharedReads(store)  # lookups under way, shared
        self.answers = Answers(accounting)  # outcomes and their counting
        self.embeddings = EmbeddingRunner(
            store=store,
            leases=self.leases,
            upstream=self.upstream,
            ttl=self.ttl,
            accounting=accounting,
        )

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
            skey=storage_key(
                self.namespace, kind, tenant, model.name, key, prompt, tagged=self.tagged
            ),
            cacheable=cacheable,
        )

    def prepare_embeddings(
        self,
        body: dict[str, Any],
        items: list[Item],
        *,
        model: ModelInfo,
        tenant: str,
        controls: CacheControls,
        encoding: Encoding | None,
    ) -> EmbeddingBatch:
        """An embeddings request: a key per input (see `genai_api.embeddings.runner`)."""
        return prepare(
            self.namespace,
            body,
            items,
            model=model,
            tenant=tenant,
            controls=controls,
            encoding=encoding,
            tagged=self.tagged,
        )

    async def run_embeddings(self, batch: EmbeddingBatch) -> EmbeddingOutcome:
        """Answer an embeddings batch input by input, each its own entry and flight."""
        budget.begin()
        return await self.embeddings.run(batch)

    async def run(self, call: Call) -> Outcome:
        """Answer one non-streamed call, from the cache when it may."""
        budget.begin()  # one Redis failure at most: then this request (and its flight) bypass
        if call.controls.bypass or not call.cacheable:
            return self.answers.answer(call, CacheStatus.BYPASS, await self._provider_call(call))
        cached = await self._read(call)
        if cached is not None:
            return self.answers.answer(call, CacheStatus.HIT, cached)
        task, started, feed = self._join(call, None)
        followers = None if started else self.answers.follow(call, task)
        try:
            entry, status = await asyncio.shield(task)
        except BaseException:
            if followers is not None:
                followers.waiting -= 1  # no answer: not counted
            raise
        finally:
            if feed is not None:
                self.relay.leave(feed, task, finished=task.done())
        if followers is None:
            return self.answers.answer(call, status, entry)
        return self.answers.uncounted(call, joined(status), entry)  # counted as it landed

    async def run_stream(self, call: Call) -> Streamed:
        """Answer one streamed call: replayed from the cache, or relayed live from the one
        flight for its key. Returns once the first chunk is there, so an error before it
        (a 429, a timeout) is raised here and becomes a plain HTTP error."""
        budget.begin()
        if call.controls.bypass or not call.cacheable:
            feed = Feed()
            feed.followers += 1
            task = self.relay.spawn(self._bypass_stream(call, feed))
            return await self._relay(call, CacheStatus.BYPASS, task, feed)
        cached = await self._read(call)
        if cached is not None:
            return self._replay(call, CacheStatus.HIT, cached)
        task, started, live = self._join(call, Feed())
        if live is None:  # a non-streamed flight: replay its answer once it lands
            entry, status = await asyncio.shield(task)
            return self._replay(call, status if started else joined(status), entry)
        status = CacheStatus.MISS if started else CacheStatus.COALESCED
        return await self._relay(call, status, task, live)

    async def _read(self, call: Call) -> Entry | None:
        """The usable entry for `call`, if reading is allowed; the cache fails open.

        A key whose flight is running here is not read: its entry is not stored yet (or is
        being stored right now by that flight), and the request joins the flight anyway.
        When the leases' claim reads the entry itself (Redis), only what this process holds
        (the L1) is looked at: anything else is read by the flight's claim, in the round trip
        that takes the lease on a miss, so a miss costs one round trip before the provider,
        not two. Otherwise a key whose lookup is under way here is not read again: the
        request waits for that lookup's bytes (`SharedReads`). Either way a burst of
        identical requests costs one read, not one each.
        """
        if not call.controls.read or call.skey in self.coalescer:
            return None
        if self.leases.claim_reads:
            raw = self.leases.peek(call.skey)
            return None if raw is None else self._usable(call, raw)
        try:
            raw = await self.reads.get(call.skey)
        except CacheUnavailable as exc:
            self._cache_failed(call, exc.message)
            return None
        return None if raw is None else self._usable(call, raw)

    def _join(
        self, call: Call, feed: Feed | None
    ) -> tuple[asyncio.Task[tuple[Entry, CacheStatus]], bool, Feed | None]:
        """Start or join the flight for `call`: (its task, started by us, its live feed)."""
        # A no-cache request must not be answered by a flight that re-read the cache, nor a
        # max-age request by one that judged what it found by another request's max-age.
        if not call.controls.read:
            flight = call.skey + "#fresh"
        elif call.controls.max_age is not None:
            flight = f"{call.skey}#max-age={call.controls.max_age}"
        else:
            flight = call.skey
        task, started = self.coalescer.join(flight, lambda: self._fill(call, feed))
        if started and feed is not None:
            self.relay.attach(flight, feed, task)
        elif not started:
            feed = self.relay.feed_of(flight)
        if feed is not None:
            feed.followers += 1  # counted from now, so nobody cancels the call under us
        return task, started, feed

    async def _relay(
        self,
        call: Call,
        status: CacheStatus,
        task: asyncio.Task[tuple[Entry, CacheStatus]],
        feed: Feed,
    ) -> Streamed:
        """Wait for the first chunk (or the end), then hand out the live feed."""
        try:
            await feed.ready()
        except BaseException:
            self.relay.leave(feed, task, finished=False)
            raise
        if not feed.chunks:  # over before it began: an error, or a re-check that hit
            self.relay.leave(feed, task, finished=True)
            entry, landed = await asyncio.shield(task)
            answered = landed if status is CacheStatus.MISS else joined(landed)
            return self._replay(call, answered, entry)
        if status is CacheStatus.MISS and feed.bypassed:
            status = CacheStatus.BYPASS
        task.add_done_callback(partial(self._account_flight, call, status))
        chunks = self.relay.follow(feed, task, wants_usage(call.body))
        return Streamed(status, call.key, chunks)

    def _replay(self, call: Call, status: CacheStatus, entry: Entry) -> Streamed:
        """A finished entry as a stream: its own chunks, or a synthetic stream."""
        outcome = self.answers.answer(call, status, entry)
        chunks = entry.chunks if entry.chunks is not None else synthesize(entry.response)
        return Streamed(status, call.key, replay(chunks, wants_usage(call.body)), outcome)

    def _account_flight(
        self, call: Call, status: CacheStatus, task: asyncio.Task[tuple[Entry, CacheStatus]]
    ) -> None:
        """Count a relayed answer when its flight lands, whether or not its client stayed."""
        if task.cancelled() or task.exception() is not None:
            return
        entry, landed = task.result()
        self.answers.answer(call, landed if status is CacheStatus.MISS else status, entry)

    @staticmethod
    def _usable(call: Call, raw: bytes) -> Entry | None:
        """The stored entry, if this request may be answered with it."""
        entry = decode_shared(raw)
        if entry is None:
            return None
        max_age = call.controls.max_age
        if max_age is not None and entry.age() > max_age:
            return None
        return entry

    async def _fill(self, call: Call, feed: Feed | None = None) -> tuple[Entry, CacheStatus]:
        """The body of a flight: claim the key fleet-wide (re-check + lease), call the
        provider once, store the answer (which releases a lease); leaving the claim releases
        a lease still held. With Redis the flight lands once the store is written to Redis,
        not once Redis replied (`Claim.send_fill`): the reply is read in the background, and
        if it fails the answer has gone out as a MISS, the error is counted and the lease is
        released.

        With a `feed` (a streamed request started the flight) the provider call streams into
        it; only a stream that completed normally is stored.
        """
        try:
            claim: Claim[Entry] = Claim()
            if call.controls.read:  # a no-cache request must not wait for someone's answer
                claim = await self.leases.claim(call.skey, partial(self._usable, call))
                if claim.failure is not None and self.leases.claim_reads:
                    self._cache_failed(call, claim.failure)  # it was the request's lookup
                if claim.found is not None:
                    found = CacheStatus.COALESCED if claim.waited else CacheStatus.HIT
                    return claim.found, found
            status = CacheStatus.BYPASS if claim.degraded else CacheStatus.MISS
            if feed is not None:
                feed.bypassed = status is CacheStatus.BYPASS  # known before the first chunk
            async with claim:
                if feed is None:
                    entry = await self._provider_call(call)
                else:
                    entry = await self._stream_call(call, feed)
                if call.controls.write and not claim.degraded:  # it failed Redis already
                    value, ttl = entry.encode(), self.ttl_for(call)
                    try:
                        if feed is None:  # answered once Redis has it, not once it replied
                            failed = partial(self._cache_failed, call)
                            await claim.send_fill(self.store, call.skey, value, ttl, failed)
                        else:  # a stream's clients had every chunk already
                            await claim.fill(self.store, call.skey, value, ttl)
                    except CacheUnavailable as exc:
                        self._cache_failed(call, exc.message)
                        status = CacheStatus.BYPASS
            return entry, status
        finally:
            if feed is not None:
                feed.close()  # no-op after the stream's own close; ends a re-check hit

    async def _bypass_stream(self, call: Call, feed: Feed) -> tuple[Entry, CacheStatus]:
        return await self._stream_call(call, feed), CacheStatus.BYPASS

    async def _stream_call(self, call: Call, feed: Feed) -> Entry:
        """One streamed provider call, each chunk appended to `feed` the moment it arrives.

        The feed is closed as soon as the stream is complete (before any store), or with the
        error when it fails, is cut short, or runs past `UPSTREAM_TIMEOUT` in total.
        """
        try:
            async with self._upstream:
                self.in_flight += 1
                chunks = self.provider.stream(call.path, upstream_body(call.body))
                try:
                    async with asyncio.timeout(self.upstream_timeout):
                        async for chunk in chunks:
                            feed.append(chunk)
                except TimeoutError as exc:
                    raise ProviderTimeout() from exc
                finally:
                    self.in_flight -= 1
                    aclose = getattr(chunks, "aclose", None)
                    if aclose is not None:
                        await aclose()
            response = assemble(feed.chunks)
        except GatewayError as exc:
            feed.close(exc)
            raise
        except BaseException:
            feed.close(ProviderError("The upstream stream was interrupted.", status_code=502))
            raise
        feed.close()
        return await self._entry(call, response, feed.chunks)

    async def _provider_call(self, call: Call) -> Entry:
        response = await self.upstream(call.path, call.body)
        return await self._entry(call, response)

    async def _entry(
        self, call: Call, response: dict[str, Any], chunks: list[dict[str, Any]] | None = None
    ) -> Entry:
        """The entry of a fresh answer, with usage counted by us if the provider sent none."""
        entry = Entry.fresh(response, model=call.model.name, chunks=chunks)
        if self.tokens is not None:
            await fill_usage(entry, self.tokens, call.model, call.path, call.body)
        return entry

    async def upstream(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One provider call, within `UPSTREAM_CONCURRENCY` and `UPSTREAM_TIMEOUT`."""
        async with self._upstream:
            self.in_flight += 1
            try:
                async with asyncio.timeout(self.upstream_timeout):
                    return await self.provider.create(path, body)
            except TimeoutError as exc:
                raise ProviderTimeout() from exc
            finally:
                self.in_flight -= 1

    def ttl_for(self, call: Call) -> float:
        return self.ttl(call.model, call.controls)

    def ttl(self, model: ModelInfo, controls: CacheControls) -> float:
        """The requested TTL (capped), else the model's or the default with ±10 % jitter."""
        if controls.ttl is not None:
            return float(min(controls.ttl, self.max_ttl))
        base = model.ttl or self.default_ttl
        return float(min(base * random.uniform(1 - JITTER, 1 + JITTER), self.max_ttl))

    def _cache_failed(self, call: Call, reason: str) -> None:
        log.warning("cache unavailable, bypassing: %s", reason)
        self.accounting.record_error(call.model.name)
