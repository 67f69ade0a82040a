"""A request as the pipeline sees it: `Preparer.prepare` makes a `Call` of a checked body.

Apart from the pipeline's steps because it is pure bookkeeping on the request, done once per
request before any step: the canonical key (with token ids keyed as their text where the
model's tokenizer is known exactly), the storage key (hash-tagged on a Redis Cluster),
whether the request may be cached, its requester for regenerates, and its semantic scope
when its model opted in. `retarget` makes the same request for a fallback model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from genai_api.apis.base import Api
from genai_api.controls import CacheControls
from genai_api.keys import canonical_key, storage_key
from genai_api.models.table import ModelInfo
from genai_api.pipeline.call import Call
from genai_api.pipeline.variants import Variants
from genai_api.savings.tokenizer import TokenCounter
from genai_api.semantic.layer import SemanticCache

if TYPE_CHECKING:
    from tiktoken import Encoding


class Preparer:
    def __init__(
        self,
        *,
        namespace: str,
        tagged: bool,
        cache_nondeterministic: bool,
        tokens: TokenCounter | None,
        variants: Variants,
    ) -> None:
        self.namespace = namespace
        self.tagged = tagged  # storage keys carry hash tags (a Redis Cluster)
        self.cache_nondeterministic = cache_nondeterministic
        self.variants = variants
        self.semantic: SemanticCache | None = None  # set by the gateway when a model opts in
        # The tokenizers the models table can name, by name: a model's is known exactly.
        self._exact: dict[str | None, Encoding] = (
            {name: tokens.get_encoding(name) for name in tokens.encodings} if tokens else {}
        )

    def prepare(
        self,
        api: Api,
        body: dict[str, Any],
        *,
        model: ModelInfo,
        tenant: str,
        controls: CacheControls,
        prompt: str | None = None,
        caller: str | None = None,
    ) -> Call:
        """The call for a checked `body` of `api`: its keys, and whether it may be cached.
        `caller`: who sent it, when that is not `tenant` (`Authenticator.identity`)."""
        encoding = self._exact.get(model.tokenizer)
        key_body = api.key_body(body, encoding)
        key = canonical_key(api.name, key_body, tenant=tenant)
        cacheable = not api.bypass(body) and (
            self.cache_nondeterministic or not api.nondeterministic(body)
        )
        semantic = None
        if model.semantic is not None and cacheable and self.semantic is not None:
            semantic = self.semantic.pending(
                model.semantic, api.name, key_body, tenant=tenant, model=model.name, prompt=prompt
            )
        requester = None
        if cacheable and self.variants.enabled and api.nondeterministic(body):
            requester = self.variants.requester(caller or tenant, body)
        return Call(
            api=api,
            model=model,
            body=body,
            controls=controls,
            key=key,
            skey=storage_key(
                self.namespace, api.kind, tenant, model.name, key, prompt, tagged=self.tagged
            ),
            cacheable=cacheable,
            requester=requester,
            tenant=tenant,
            prompt=prompt,
            semantic=semantic,
        )

    def retarget(self, call: Call, model: ModelInfo) -> Call:
        """The same request for `model` (a fallback): its own key, entry, TTL and prices
        (and the same requester, for its regenerates)."""
        body = {**call.body, "model": model.name}
        retargeted = self.prepare(
            call.api,
            body,
            model=model,
            tenant=call.tenant,
            controls=call.controls,
            prompt=call.prompt,
        )
        if retargeted.requester is not None:
            retargeted.requester = call.requester
        return retargeted
