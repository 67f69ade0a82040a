"""The pipeline's embeddings path: a batch keyed per input, run input by input, and made
again for a model's fallbacks when its upstream fails.

The per-input steps themselves (lookup, coalescing within and across processes, the one
upstream call for what is missing, storing, accounting) are `genai_api.embeddings.runner`'s;
this module only prepares a batch and wraps a run in the request's Redis budget and the
model's fallbacks, as `Pipeline.run` does for a completion.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from genai_api.controls import CacheControls
from genai_api.embeddings.runner import (
    EmbeddingBatch,
    EmbeddingOutcome,
    EmbeddingRunner,
    batch_of,
    prepare,
)
from genai_api.embeddings.upstream import Item
from genai_api.errors import ProviderError
from genai_api.models.table import ModelInfo
from genai_api.pipeline.fallbacks import Fallbacks
from genai_api.pipeline.repeats import Repeats, same_model
from genai_api.savings.tokenizer import EncodingNotLoadedError, TokenCounter
from genai_api.store import budget

if TYPE_CHECKING:
    from tiktoken import Encoding


class EmbeddingBatches:
    def __init__(
        self,
        runner: EmbeddingRunner,
        fallbacks: Fallbacks,
        *,
        namespace: str,
        tagged: bool,
        tokens: TokenCounter | None,
        repeats: Repeats,
    ) -> None:
        self.runner = runner
        self.repeats = repeats
        self.fallbacks = fallbacks
        self.namespace = namespace
        self.tagged = tagged  # storage keys carry hash tags (a Redis Cluster)
        self.tokens = tokens

    async def prepare(
        self,
        body: dict[str, Any],
        items: list[Item],
        *,
        model: ModelInfo,
        tenant: str,
        controls: CacheControls,
        encoding: Encoding | None,
        raw: bytes | None = None,
    ) -> EmbeddingBatch:
        """An embeddings request: a key per input (see `genai_api.embeddings.runner`).
        `raw`: the bytes `body` was parsed from; a batch seen before is not keyed again
        (`Repeats`: its keys are a function of those bytes, the tenant, the model and its
        tokenizer)."""
        name = None
        if raw is not None:
            name = (raw, "embeddings", tenant, model.name, encoding and encoding.name)
            kept = self.repeats.recall(name)
            if kept is not None and same_model(kept[0], model):
                return batch_of(body, items, model, tenant, controls, encoding, kept[1], kept[2])
        batch = await prepare(
            self.namespace,
            body,
            items,
            model=model,
            tenant=tenant,
            controls=controls,
            encoding=encoding,
            tagged=self.tagged,
        )
        if name is not None:
            self.repeats.keep(name, (model, tuple(batch.skeys), batch.key))
        return batch

    async def run(self, batch: EmbeddingBatch) -> EmbeddingOutcome:
        """Answer an embeddings batch input by input, each its own entry and flight."""
        budget.begin()
        begun = asyncio.get_running_loop().time() if batch.model.fallbacks else 0.0
        try:
            return await self.runner.run(batch)
        except ProviderError as exc:
            if not batch.model.fallbacks:
                raise
            return await self.fallbacks.after(
                batch.model,
                exc,
                begun,
                lambda info: self._run_for(batch, info),
            )

    async def _run_for(self, batch: EmbeddingBatch, model: ModelInfo) -> EmbeddingOutcome:
        return await self.run(await self._batch_for(batch, model))

    async def _batch_for(self, batch: EmbeddingBatch, model: ModelInfo) -> EmbeddingBatch:
        """The same embeddings request for `model` (a fallback), its inputs keyed for it."""
        encoding = None
        if model.tokenizer is not None and self.tokens is not None:
            with contextlib.suppress(EncodingNotLoadedError):
                encoding = self.tokens.get_encoding(model.tokenizer)
        return await self.prepare(
            {**batch.request, "model": model.name},
            batch.items,
            model=model,
            tenant=batch.tenant,
            controls=batch.controls,
            encoding=encoding,
        )
