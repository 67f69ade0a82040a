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

Which upstream a call goes to, and how many calls each upstream takes at once, is the
provider's business (`genai_api.providers.routing`); when a model's upstream fails, each
`run*` makes the same request for its fallbacks (`genai_api.pipeline.fallbacks`).
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import TYPE_CHECKING, Any

from genai_api.embeddings.runner import EmbeddingRunner
from genai_api.entry import Entry, decode_shared
from genai_api.errors import CacheUnavailable, ProviderError
from genai_api.flights.coalesce import Coalescer
from genai_api.flights.fanout import Feed
from genai_api.flights.relay import Relay, Streamed, replay
from genai_api.flights.shared_reads import SharedReads
from genai_api.leases import Claim, Leases, LocalLeases
from genai_api.leases.base import shared
from genai_api.models.table import ModelInfo
from genai_api.pipeline.answering import Answering
from genai_api.pipeline.answers import Answers, Outcome, joined
from genai_api.pipeline.call import Call
from genai_api.pipeline.embedding_batches import EmbeddingBatches
from genai_api.pipeline.expiry import Expiry
from genai_api.pipeline.fallbacks import Fallbacks, within
from genai_api.pipeline.prepare import Preparer
from genai_api.pipeline.repeats import Repeats
from genai_api.pipeline.variants import Variants
from genai_api.providers.base import Provider
from genai_api.savings.accounting import Accounting, CacheStatus
from genai_api.savings.tokenizer import TokenCounter
from genai_api.semantic.layer import Match, SemanticCache
from genai_api.store import budget
from genai_api.store.base import CacheStore

if TYPE_CHECKING:
    pass

log = logging.getLogger("genai_api.pipeline")


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
        upstream_timeout: float,
        stream_finish_on_disconnect: bool = True,
        leases: Leases | None = None,
        tokens: TokenCounter | None = None,
        variants: Variants | None = None,
        fallbacks: Fallbacks | None = None,
        tagged: bool = False,
    ) -> None:
        self.store = store
        self.provider = provider
        self.accounting = accounting
        self.namespace = namespace
        self.tagged = tagged  # storage keys carry hash tags (a Redis Cluster)
        self.expiry = Expiry(default_ttl, max_ttl)  # each entry's TTL
        self.cache_nondeterministic = cache_nondeterministic
        self.tokens = tokens  # counts usage the provider did not send
        self.coalescer: Coalescer[tuple[Entry, CacheStatus]] = Coalescer()
        self.relay = Relay(self.coalescer, finish_on_disconnect=stream_finish_on_disconnect)
        self.leases: Leases = leases or LocalLeases(store)
        # Several answers per key of a sampled request, and regenerates (off without one).
        self.variants = variants or Variants(store, namespace, most=1, window=0, shared=False)
        self.fallbacks = fallbacks or Fallbacks(ModelInfo, upstream_timeout)
        self.reads = SharedReads(store)  # lookups under way, shared
        # A provider call made into an entry (usage counted where the provider sent none).
        self.answering = Answering(provider, self.upstream, tokens)
        self.answers = Answers(accounting)  # outcomes and their counting
        # What a body seen before was checked and keyed to, by its bytes.
        self.repeats = Repeats()
        # A request's `Call`: its keys, whether it may be cached, its requester.
        self.calls = Preparer(
            namespace=namespace,
            tagged=tagged,
            cache_nondeterministic=cache_nondeterministic,
            tokens=tokens,
            variants=self.variants,
            repeats=self.repeats,
        )
        self.prepare = self.calls.prepare
        self.retarget = self.calls.retarget
        self.embeddings = EmbeddingRunner(
            store=store,
            leases=self.leases,
            upstream=self.upstream,
            ttl=self.expiry.ttl,
            accounting=accounting,
            slide=self.expiry.model_ttl_ms,
        )
        # Embedding batches: keyed per input, run by the runner, made again for fallbacks.
        self.batches = EmbeddingBatches(
            self.embeddings,
            self.fallbacks,
            namespace=namespace,
            tagged=tagged,
            tokens=tokens,
            repeats=self.repeats,
        )
        self.prepare_embeddings = self.batches.prepare
        self.run_embeddings = self.batches.run

    @property
    def semantic(self) -> SemanticCache | None:
        """The semantic layer, set by the gateway when a model opts in (else None)."""
        return self.calls.semantic

    @semantic.setter
    def semantic(self, layer: SemanticCache | None) -> None:
        self.calls.semantic = layer

    async def run(self, call: Call) -> Outcome:
        """Answer one non-streamed call, from the cache when it may."""
        budget.begin()  # one Redis failure at most: then this request (and its flight) bypass
        begun = self._clock() if call.model.fallbacks else 0.0
        try:
            if call.controls.bypass or not call.cacheable:
                entry = await self.answering.whole(call)
                return self.answers.answer(call, CacheStatus.BYPASS, entry)
            cached = await self._lookup(call)
            if cached is not None:
                return self._answer(call, CacheStatus.HIT, cached)
            if call.semantic is not None and (match := await self._by_meaning(call)) is not None:
                return self._matched(call, match)
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
                return self._answer(call, status, entry)
            self._served(call, entry)
            return self.answers.uncounted(call, joined(status), entry)  # counted as it landed
        except ProviderError as exc:
            if not call.model.fallbacks:
                raise
            return await self.fallbacks.after(
                call.model, exc, begun, lambda info: self.run(self.retarget(call, info))
            )

    async def run_stream(self, call: Call) -> Streamed:
        """Answer one streamed call: replayed from the cache, or relayed live from the one
        flight for its key. Returns once the first chunk is there, so an error before it
        (a 429, a timeout) is raised here and becomes a plain HTTP error, or falls back."""
        budget.begin()
        begun = self._clock() if call.model.fallbacks else 0.0
        try:
            if call.controls.bypass or not call.cacheable:
                feed = Feed()
                feed.followers += 1
                task = self.relay.spawn(self._bypass_stream(call, feed))
                return await self._relay(call, CacheStatus.BYPASS, task, feed)
            cached = await self._lookup(call)
            if cached is not None:
                return self._replay(call, CacheStatus.HIT, cached)
            if call.semantic is not None and (match := await self._by_meaning(call)) is not None:
                return self._replay_match(call, match)
            task, started, live = self._join(call, Feed())
            if live is None:  # a non-streamed flight: replay its answer once it lands
                entry, status = await asyncio.shield(task)
                return self._replay(call, status if started else joined(status), entry)
            status = CacheStatus.MISS if started else CacheStatus.COALESCED
            return await self._relay(call, status, task, live)
        except ProviderError as exc:
            if not call.model.fallbacks:
                raise
            streamed = await self.fallbacks.after(
                call.model, exc, begun, lambda info: self.run_stream(self.retarget(call, info))
            )
            streamed.chunks = within(self.fallbacks.deadline(begun), streamed.chunks)
            return streamed

    @staticmethod
    def _clock() -> float:
        return asyncio.get_running_loop().time()

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
            raw = await self.reads.get(call.skey, self.expiry.slide_ms(call.model))
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
        elif call.seen:  # a regenerate: a fresh answer, which other regenerates may share
            flight = call.skey + "#regenerate"
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
        chunks = self.relay.follow(feed, task, call.api.client_view(call.body))
        return Streamed(call.api, status, call.key, chunks)

    def _replay(self, call: Call, status: CacheStatus, entry: Entry) -> Streamed:
        """A finished entry as a stream: its own chunks, or a synthetic stream."""
        outcome = self._answer(call, status, entry)
        chunks = entry.chunks if entry.chunks is not None else call.api.synthesize(entry.response)
        view = call.api.client_view(call.body)
        return Streamed(call.api, status, call.key, replay(chunks, view), outcome)

    def _account_flight(
        self, call: Call, status: CacheStatus, task: asyncio.Task[tuple[Entry, CacheStatus]]
    ) -> None:
        """Count a relayed answer when its flight lands, whether or not its client stayed."""
        if task.cancelled() or task.exception() is not None:
            return
        entry, landed = task.result()
        self._answer(call, landed if status is CacheStatus.MISS else status, entry)

    def _answer(self, call: Call, status: CacheStatus, entry: Entry) -> Outcome:
        """The outcome of one answer, counted, and remembered as served to its requester."""
        self._served(call, entry)
        return self.answers.answer(call, status, entry)

    async def _by_meaning(self, call: Call) -> Match | None:
        """An exact miss of an opted-in model's request: its answer by meaning, if any
        (`genai_api.semantic`). Not for a no-cache request, nor a regenerate.

        When the leases' claim reads the entry (Redis), `_lookup` only looked at the L1: the
        store is read here first, so the exact lookup always runs before the semantic one
        (one more round trip, for these models' L1 misses only)."""
        if self.semantic is None or call.semantic is None:
            return None
        if not call.controls.read or call.seen:
            return None
        if self.leases.claim_reads and call.skey not in self.coalescer:
            try:
                raw = await self.reads.get(call.skey)
            except CacheUnavailable as exc:
                self._cache_failed(call, exc.message)
                return None  # the cache is down: no semantic hit either
            entry = None if raw is None else self._usable(call, raw)
            if entry is not None:
                return Match(entry, None)
        return await self.semantic.lookup(call.semantic, partial(self._usable, call))

    def _matched(self, call: Call, match: Match) -> Outcome:
        """A SEMANTIC-HIT: counted under its own name, keyed by the entry that answered
        (or a plain HIT, when the exact read of `_by_meaning` found the entry)."""
        if match.candidate is None:
            return self._answer(call, CacheStatus.HIT, match.entry)
        # Not `_answer`: the entry is another key's, so it is not recorded as one of this
        # key's answers served to the requester (regenerates are about this key).
        outcome = self.answers.answer(call, CacheStatus.SEMANTIC_HIT, match.entry)
        outcome.key = match.candidate.key
        outcome.similarity = match.candidate.similarity
        return outcome

    def _replay_match(self, call: Call, match: Match) -> Streamed:
        """`_matched`, as a stream: the matched entry's chunks replayed."""
        outcome = self._matched(call, match)
        entry = match.entry
        chunks = entry.chunks if entry.chunks is not None else call.api.synthesize(entry.response)
        view = call.api.client_view(call.body)
        return Streamed(call.api, outcome.status, outcome.key, replay(chunks, view), outcome)

    def _served(self, call: Call, entry: Entry) -> None:
        if call.requester is not None:
            self.variants.record(call.requester, call.skey, entry.index)

    async def _lookup(self, call: Call) -> Entry | None:
        """`_read`, for a request whose key may hold several answers: a regenerate (its
        requester was served one within the window) reads the stored answers itself and
        gets one it has not seen, else None (a fresh one, from its own flight)."""
        if call.requester is None:
            return await self._read(call)
        call.seen = await self.variants.seen(call.requester, call.skey)
        if not call.seen:
            return await self._read(call)
        if not call.controls.read or call.skey + "#regenerate" in self.coalescer:
            return None
        try:
            raw = await self.reads.get(call.skey)
        except CacheUnavailable as exc:
            self._cache_failed(call, exc.message)
            return None
        entry = None if raw is None else self._usable(call, raw)
        if entry is None:
            return None
        unseen = Variants.unseen(entry.answers, call.seen)
        return None if unseen is None else entry.variant(unseen)

    def _usable(self, call: Call, raw: bytes) -> Entry | None:
        """The stored entry, if this request may be answered with it (a plain hit on a key
        holding several answers gets any of them)."""
        entry = decode_shared(raw)
        if entry is None:
            return None
        max_age = call.controls.max_age
        if max_age is not None and entry.age() > max_age:
            return None
        if entry.more and call.requester is not None and not call.seen:
            return entry.variant(self.variants.pick(entry.answers))
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
            if call.seen:
                return await self._regenerate(call, feed)
            claim: Claim[Entry] = Claim()
            if call.controls.read:  # a no-cache request must not wait for someone's answer
                decode, slide_ms = partial(self._usable, call), self.expiry.slide_ms(call.model)
                claim = await (
                    self.leases.claim(call.skey, decode, slide_ms=slide_ms)
                    if slide_ms
                    else self.leases.claim(call.skey, decode)
                )
                if claim.failure is not None and self.leases.claim_reads:
                    self._cache_failed(call, claim.failure)  # it was the request's lookup
                if claim.found is not None:
                    found = CacheStatus.COALESCED if claim.waited else CacheStatus.HIT
                    return claim.found, found
                if claim.error is not None:  # the holder's call elsewhere failed: so does ours
                    raise claim.error
            status = CacheStatus.BYPASS if claim.degraded else CacheStatus.MISS
            if feed is not None:
                feed.bypassed = status is CacheStatus.BYPASS  # known before the first chunk
            async with claim:
                try:
                    if feed is None:
                        entry = await self.answering.whole(call)
                    else:
                        entry = await self.answering.stream(call, feed)
                except ProviderError as exc:
                    if shared(exc):  # waiters elsewhere answer it (or fall back), not call again
                        claim.share_failure(exc)
                    raise
                writes = call.controls.write and call.api.storable(entry.response)
                if writes and not claim.degraded:  # a degraded claim failed Redis already
                    ttl = self.expiry.ttl(call.model, call.controls)
                    value = entry.encode(ttl)
                    try:
                        if feed is None:  # answered once Redis has it, not once it replied
                            failed = partial(self._cache_failed, call)
                            await claim.send_fill(self.store, call.skey, value, ttl, failed)
                        else:  # a stream's clients had every chunk already
                            await claim.fill(self.store, call.skey, value, ttl)
                    except CacheUnavailable as exc:
                        self._cache_failed(call, exc.message)
                        status = CacheStatus.BYPASS
                    if status is CacheStatus.MISS and call.semantic and self.semantic:
                        self.semantic.remember(call.semantic, call.skey, call.key, ttl)
            return entry, status
        finally:
            if feed is not None:
                feed.close()  # no-op after the stream's own close; ends a re-check hit

    async def _regenerate(self, call: Call, feed: Feed | None) -> tuple[Entry, CacheStatus]:
        """A fresh answer for a requester who was served every stored one: called without a
        lease (it must not be answered by the answers it has seen), then added to the stored
        entry while it holds fewer than `CACHE_VARIANTS` answers. Two processes adding at
        once may lose one of the two (the last write wins); neither is ever served wrongly."""
        if feed is None:
            entry = await self.answering.whole(call)
        else:
            entry = await self.answering.stream(call, feed)
        entry.index = -1  # not stored (yet)
        if not call.controls.write or not call.api.storable(entry.response):
            return entry, CacheStatus.MISS
        try:
            raw = await self.store.get(call.skey)
            stored = None if raw is None else decode_shared(raw)
            if stored is not None and stored.answers >= self.variants.most:
                return entry, CacheStatus.MISS  # the entry is full: served, not kept
            whole = entry if stored is None else stored.with_answer(entry)
            if stored is None:
                entry.index = 0
            ttl = self.expiry.ttl(call.model, call.controls)
            await self.store.set(call.skey, whole.encode(ttl), ttl)
        except CacheUnavailable as exc:
            self._cache_failed(call, exc.message)
            entry.index = -1
            return entry, CacheStatus.BYPASS
        return entry, CacheStatus.MISS

    async def _bypass_stream(self, call: Call, feed: Feed) -> tuple[Entry, CacheStatus]:
        return await self.answering.stream(call, feed), CacheStatus.BYPASS

    async def upstream(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One provider call (the provider bounds it by `UPSTREAM_TIMEOUT`, waiting for a slot
        of its upstream's `UPSTREAM_CONCURRENCY` included, and counts it if it fails)."""
        return await self.provider.create(path, body)

    def _cache_failed(self, call: Call, reason: str) -> None:
        log.warning("cache unavailable, bypassing: %s", reason)
        self.accounting.record_error(call.model.name)
