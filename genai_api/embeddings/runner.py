"""The pipeline per input for embedding batches: key → lookup → coalesce → provider → store.

Every input of a batch is its own cache entry. One MGET reads all of them; a repeated input is
looked up and fetched once; the missing inputs go upstream in one call (provider-sized chunks,
run concurrently under the upstream semaphore, when the batch is larger); and their vectors are
written back in one pipelined round trip, each with its own jittered TTL. Inputs another batch
is already fetching are joined, not fetched again (`ManyCoalescer`, one flight key per input);
with Redis, a flight leases its inputs fleet-wide first (`genai_api.leases.batch`), so inputs
another process is fetching are waited for, not fetched twice.

Per input status, which the stats count (`count=`) and the headers sum up:
HIT (found in the cache), MISS (sent upstream by this request), COALESCED (answered by a fetch
it did not make: another batch's flight, or an earlier copy of itself in the same batch) and
BYPASS (sent upstream with the cache skipped or failing). The request's `X-Cache` is the first
of BYPASS, MISS, COALESCED present, else HIT; `X-Cache-Hits`, `X-Cache-Misses` (MISS and
BYPASS) and `X-Cache-Coalesced` count inputs and add up to the batch's length, so a batch's
repeated input on a cold cache is coalesced in the headers as in the stats, never a hit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import tiktoken

from genai_api.apis.token_text import remembered, text_of
from genai_api.controls import CacheControls
from genai_api.embeddings.upstream import Item, Upstream, fetch_vectors
from genai_api.embeddings.vectors import VectorEntry, decode_many
from genai_api.errors import CacheUnavailable
from genai_api.flights.coalesce_many import ManyCoalescer
from genai_api.keys import embedding_keys, request_key, storage_prefix, tag
from genai_api.leases import Leases
from genai_api.leases.batch import Fetched, batch_leases
from genai_api.models.table import ModelInfo
from genai_api.savings.accounting import Accounting, CacheStatus
from genai_api.store.base import CacheStore

log = logging.getLogger("genai_api.pipeline")

T = TypeVar("T")
Found = tuple[VectorEntry, CacheStatus]

_KEY_FIELDS = ("input", "encoding_format", "user", "cache")  # not part of an input's key
OFFLOAD_VECTORS = 512  # (de)code or render vectors in a thread past this many
OFFLOAD_TOKENS = 20_000  # token arrays checked against their text in a thread past this many


@dataclass(slots=True)
class EmbeddingBatch:
    """One embeddings request as the pipeline sees it."""

    model: ModelInfo
    items: list[Item]  # request order
    skeys: list[str]  # where each item's entry lives, same order
    body: dict[str, Any]  # upstream body without `input`; asks for base64
    controls: CacheControls
    key: str  # the X-Cache-Key: the one input's entry key, else the whole canonical request
    encoding: tiktoken.Encoding | None  # for each input's share of the usage
    tenant: str = ""  # with `request`, what the same request for another model needs
    request: dict[str, Any] = field(default_factory=dict)  # as the client sent it


@dataclass(slots=True)
class EmbeddingOutcome:
    status: CacheStatus
    key: str
    model: str
    vectors: list[bytes]  # float32 LE, request order
    tokens: int  # usage over the whole batch, as if nothing were cached
    hits: int  # inputs found in the cache
    misses: int  # inputs sent upstream by this request
    coalesced: int = 0  # inputs answered by a fetch made for another request or position
    age: int = 0
    saved_tokens: int = 0
    saved_cost: Decimal = field(default_factory=Decimal)
    fallback: str | None = None  # the fallback model that answered (`X-Upstream-Model`)

    @property
    def from_cache(self) -> bool:
        return self.status in (CacheStatus.HIT, CacheStatus.COALESCED)


async def prepare(
    namespace: str,
    body: dict[str, Any],
    items: list[Item],
    *,
    model: ModelInfo,
    tenant: str,
    controls: CacheControls,
    encoding: tiktoken.Encoding | None,
    tagged: bool = False,
) -> EmbeddingBatch:
    """Keys for the batch and each input; `encoding_format` changes neither. Token arrays
    that are exactly the model's tokenizer's encoding of a text are keyed as that text
    (`apis.token_text`), so ids and strings share entries. `tagged`: the digests are hash
    tags (`genai_api.keys.storage_key`)."""
    dimensions = body.get("dimensions")
    extra = {k: v for k, v in body.items() if k not in (*_KEY_FIELDS, "model", "dimensions")}
    prefix = storage_prefix(namespace, "emb", tenant, model.name)

    def key(inputs: list[Item]) -> list[str]:
        return embedding_keys(model.name, inputs, dimensions=dimensions, tenant=tenant, extra=extra)

    keys = key(items)
    keyed: list[Item] = items
    if encoding is not None and isinstance(items[0], list):
        keyed = await _as_texts(items, keys, encoding)
        texts = [pos for pos, item in enumerate(keyed) if isinstance(item, str)]
        for pos, text_key in zip(texts, key([keyed[pos] for pos in texts]), strict=True):
            keys[pos] = text_key
    skeys = [prefix + tag(key) for key in keys] if tagged else [prefix + key for key in keys]
    # A one-input request's X-Cache-Key is its entry's, so `DELETE /v1/cache {"key"}` removes
    # what it named; a batch's names the batch, whose entries are the inputs' own.
    if len(keys) == 1:
        batch_key = keys[0]
    else:
        whole = {k: v for k, v in body.items() if k != "encoding_format"}
        whole["input"] = keyed
        batch_key = request_key("embeddings", whole, tenant=tenant)
    return batch_of(body, items, model, tenant, controls, encoding, skeys, batch_key)


def batch_of(
    body: dict[str, Any],
    items: list[Item],
    model: ModelInfo,
    tenant: str,
    controls: CacheControls,
    encoding: tiktoken.Encoding | None,
    skeys: Sequence[str],
    key: str,
) -> EmbeddingBatch:
    """The batch of `body` whose keys are known (`prepare` worked them out, now or for the
    same bytes before)."""
    upstream = {k: v for k, v in body.items() if k not in ("input", "cache")}
    upstream["encoding_format"] = "base64"  # exact float32 and a third of the bytes
    return EmbeddingBatch(
        model=model,
        items=items,
        skeys=list(skeys),
        body=upstream,
        controls=controls,
        key=key,
        encoding=encoding,
        tenant=tenant,
        request=body,
    )


async def _as_texts(items: list[Item], keys: list[str], encoding: tiktoken.Encoding) -> list[Item]:
    """`items` with every token array that is exactly some text replaced by the text; each
    array's answer is remembered under its own key (free to look up on the next request),
    and a large first-time batch is decoded and re-encoded off the event loop."""

    def convert() -> list[Item]:
        out: list[Item] = []
        for item, key in zip(items, keys, strict=True):
            text = text_of(item, encoding, (encoding.name, key)) if isinstance(item, list) else None
            out.append(item if text is None else text)
        return out

    if sum(len(item) for item in items) > OFFLOAD_TOKENS and not all(
        remembered((encoding.name, key)) for key in keys
    ):
        return await asyncio.to_thread(convert)
    return convert()


Ttl = Callable[[ModelInfo, CacheControls], float]
"""The TTL an entry of `model` is stored with under `controls` (`Pipeline.ttl`)."""
Slide = Callable[[ModelInfo], int]
"""What a hit of `model` sets its entries' TTL to (ms), 0: not sliding (`Pipeline.ttl_ms`)."""


class EmbeddingRunner:
    """Runs batches for the pipeline, sharing its store, leases, provider slots, TTLs and
    counters (handed in, so this module needs nothing from the pipeline that owns it)."""

    def __init__(
        self,
        *,
        store: CacheStore,
        leases: Leases,
        upstream: Upstream,
        ttl: Ttl,
        accounting: Accounting,
        slide: Slide = lambda model: 0,
    ) -> None:
        self.store = store
        self.upstream = upstream
        self.ttl = ttl
        self.slide = slide
        self.accounting = accounting
        self.flights: ManyCoalescer[Found] = ManyCoalescer()
        self.leases = batch_leases(leases)  # None: coalescing within this process

    async def run(self, batch: EmbeddingBatch) -> EmbeddingOutcome:
        first: dict[str, int] = {}  # storage key -> first position
        for pos, skey in enumerate(batch.skeys):
            first.setdefault(skey, pos)
        found: dict[str, Found] = {}
        cache_ok = True
        if batch.controls.read:
            try:
                found = await self._lookup(batch, list(first))
            except CacheUnavailable as exc:
                self._cache_failed(batch, exc)
                cache_ok = False
        missing = [k for k in first if k not in found]
        if missing and batch.controls.bypass:
            found.update(await self._fill(batch, first, missing, cache_ok=False))
        elif missing:
            # A no-cache batch must not be answered by a flight that re-read the cache.
            suffix = "" if batch.controls.read else "#fresh"
            values, own = await self.flights.run(
                [k + suffix for k in missing],
                lambda keys: self._fill(
                    batch,
                    first,
                    [k.removesuffix(suffix) for k in keys],
                    cache_ok=cache_ok,
                    suffix=suffix,
                ),
            )
            for fkey, (entry, status) in values.items():
                found[fkey.removesuffix(suffix)] = (
                    entry,
                    status if fkey in own else CacheStatus.COALESCED,
                )
        return self._answer(batch, found, first)

    async def _lookup(self, batch: EmbeddingBatch, skeys: list[str]) -> dict[str, Found]:
        """One MGET for every distinct input; entries too old for `max-age` are misses. A
        sliding model's entries found get its TTL again in the same round trip."""
        extend_ms = self.slide(batch.model)
        store = self.store
        raws = await (
            store.get_many(skeys, extend_ms=extend_ms) if extend_ms else store.get_many(skeys)
        )
        usable = await self._usable(batch, skeys, raws)
        hit = CacheStatus.HIT
        return {skey: (entry, hit) for skey, entry in usable.items()}

    async def _usable(
        self, batch: EmbeddingBatch, skeys: list[str], raws: list[bytes | None]
    ) -> dict[str, VectorEntry]:
        """The stored entries this batch may use: decodable, and young enough for `max-age`."""
        max_age = batch.controls.max_age

        def decode() -> dict[str, VectorEntry]:
            usable: dict[str, VectorEntry] = {}
            now = time.time()
            for skey, entry in zip(skeys, decode_many(raws), strict=True):
                if entry is not None and (max_age is None or entry.age(now) <= max_age):
                    usable[skey] = entry
            return usable

        return await _off_loop(decode, len(skeys))

    async def _fill(
        self,
        batch: EmbeddingBatch,
        first: Mapping[str, int],
        skeys: list[str],
        *,
        cache_ok: bool,
        suffix: str = "",
    ) -> dict[str, Found]:
        """The body of a flight: re-check, one upstream call (chunked), one write back; with
        Redis, leased fleet-wide (re-check, wait, renew and release included)."""
        controls = batch.controls
        if self.leases is not None and cache_ok and controls.read and controls.write:
            leased = await self.leases.fill(
                skeys,
                lambda keys, raws: self._usable(batch, keys, raws),
                lambda keys: self._fetch(batch, first, keys),
                refresh=controls.max_age is not None,
                failed=lambda exc: self._cache_failed(batch, exc),
            )
            return {k + suffix: v for k, v in leased.items()}
        result: dict[str, Found] = {}
        status = CacheStatus.MISS if cache_ok and controls.write else CacheStatus.BYPASS
        if cache_ok and controls.read:
            # A flight that just landed may have stored some of these since our MGET.
            try:
                result = await self._lookup(batch, skeys)
            except CacheUnavailable as exc:
                self._cache_failed(batch, exc)
                status = CacheStatus.BYPASS
        fetched = await self._fetch(batch, first, [k for k in skeys if k not in result])
        if fetched.entries and status is CacheStatus.MISS:
            try:
                await self.store.set_many(fetched.entries)
            except CacheUnavailable as exc:
                self._cache_failed(batch, exc)
                status = CacheStatus.BYPASS
        if fetched.error is not None:
            raise fetched.error
        result.update((k, (e, status)) for k, e in fetched.values.items())
        return {k + suffix: v for k, v in result.items()}

    async def _fetch(
        self, batch: EmbeddingBatch, first: Mapping[str, int], skeys: list[str]
    ) -> Fetched[VectorEntry]:
        """Fresh entries for `skeys` from upstream (chunked), encoded for storing if allowed."""
        entries, error = await fetch_vectors(
            self.upstream,
            batch.body,
            [batch.items[first[k]] for k in skeys],
            batch.encoding,
        )
        fetched = {k: e for k, e in zip(skeys, entries, strict=True) if e is not None}
        if not batch.controls.write or not fetched:
            return Fetched(fetched, error=error)
        ttl = self.ttl

        def encode() -> list[tuple[str, bytes, float]]:
            return [(k, e.encode(), ttl(batch.model, batch.controls)) for k, e in fetched.items()]

        return Fetched(fetched, await _off_loop(encode, len(fetched)), error)

    def _answer(
        self, batch: EmbeddingBatch, found: Mapping[str, Found], first: Mapping[str, int]
    ) -> EmbeddingOutcome:
        vectors: list[bytes] = []
        hit, coalesced = CacheStatus.HIT, CacheStatus.COALESCED
        hits = hit_tokens = 0
        others: list[tuple[CacheStatus, int]] = []  # inputs not found in the cache
        oldest = float("inf")
        for pos, skey in enumerate(batch.skeys):
            entry, status = found[skey]
            vectors.append(entry.vector)
            oldest = min(oldest, entry.stored_at)
            if status is hit:  # plain ints: an enum as a dict key hashes in Python
                hits += 1
                hit_tokens += entry.tokens
            else:  # a repeat rides on its first copy's fetch
                others.append((coalesced if first[skey] != pos else status, entry.tokens))
        counts = dict.fromkeys(CacheStatus, 0)  # inputs per status
        tokens = dict.fromkeys(CacheStatus, 0)  # their tokens per status
        counts[hit], tokens[hit] = hits, hit_tokens
        for status, n in others:
            counts[status] += 1
            tokens[status] += n
        overall = next(
            (s for s in (CacheStatus.BYPASS, CacheStatus.MISS, CacheStatus.COALESCED) if counts[s]),
            CacheStatus.HIT,
        )
        accounting, model = self.accounting, batch.model
        for status, n in counts.items():
            if n:
                cost = model.cost(tokens[status], 0)
                accounting.record(
                    model.name, status, prompt_tokens=tokens[status], cost=cost, count=n
                )
        saved = tokens[CacheStatus.HIT] + tokens[CacheStatus.COALESCED]
        misses = counts[CacheStatus.MISS] + counts[CacheStatus.BYPASS]
        return EmbeddingOutcome(
            status=overall,
            key=batch.key,
            model=model.name,
            vectors=vectors,
            tokens=sum(tokens.values()),
            hits=hits,
            misses=misses,
            coalesced=counts[CacheStatus.COALESCED],
            age=max(0, int(time.time() - oldest)),  # the oldest entry used
            saved_tokens=saved,
            saved_cost=model.cost(saved, 0),
        )

    def _cache_failed(self, batch: EmbeddingBatch, exc: CacheUnavailable) -> None:
        log.warning("cache unavailable, bypassing: %s", exc.message)
        self.accounting.record_error(batch.model.name)

    async def aclose(self) -> None:
        await self.flights.aclose()


async def _off_loop(work: Callable[[], T], vectors: int) -> T:
    """Run `work` in a thread when it (de)codes enough vectors to stall the event loop."""
    if vectors > OFFLOAD_VECTORS:
        return await asyncio.to_thread(work)
    return work()
