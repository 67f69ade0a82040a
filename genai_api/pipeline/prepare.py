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
from genai_api.pipeline.repeats import Keys, Repeats, same_model
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
        repeats: Repeats,
    ) -> None:
        self.namespace = namespace
        self.tagged = tagged  # storage keys carry hash tags (a Redis Cluster)
        self.cache_nondeterministic = cache_nondeterministic
        self.variants = variants
        self.repeats = repeats  # the check and keys of bodies seen before, by their bytes
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
        raw: bytes | None = None,
    ) -> Call:
        """The call for a checked `body` of `api`: its keys, and whether it may be cached.
        `caller`: who sent it, when that is not `tenant` (`Authenticator.identity`). `raw`:
        the bytes `body` was parsed from, when it was parsed from nothing else (its keys are
        then remembered for its repeats, `Repeats`; not for a model with semantic hits,
        whose request also needs the key body)."""
        known: Keys | None = None
        if raw is not None and model.semantic is None:
            name = (raw, api.name, tenant, model.name, prompt)
            known = self.repeats.recall(name)
            if known is None or not same_model(known.model, model):
                known = self._keys(api, body, model, tenant, prompt)
                self.repeats.keep(name, known)
        if known is not None:
            key, skey, cacheable = known.key, known.skey, known.cacheable
            nondeterministic, semantic = known.nondeterministic, None
        else:
            key_body = api.key_body(body, self._exact.get(model.tokenizer))
            key = canonical_key(api.name, key_body, tenant=tenant)
            skey = self._skey(api, tenant, model, key, prompt)
            nondeterministic = api.nondeterministic(body)
            cacheable = self._cacheable(api, body, nondeterministic)
            semantic = None
            if model.semantic is not None and cacheable and self.semantic is not None:
                semantic = self.semantic.pending(
                    model.semantic,
                    api.name,
                    key_body,
                    tenant=tenant,
                    model=model.name,
                    prompt=prompt,
                )
        requester = None
        if cacheable and nondeterministic and self.variants.enabled:
            requester = self.variants.requester(caller or tenant, body)
        return Call(
            api=api,
            model=model,
            body=body,
            controls=controls,
            key=key,
            skey=skey,
            cacheable=cacheable,
            requester=requester,
            tenant=tenant,
            prompt=prompt,
            semantic=semantic,
        )

    def _keys(
        self, api: Api, body: dict[str, Any], model: ModelInfo, tenant: str, prompt: str | None
    ) -> Keys:
        key = canonical_key(
            api.name, api.key_body(body, self._exact.get(model.tokenizer)), tenant=tenant
        )
        nondeterministic = api.nondeterministic(body)
        return Keys(
            model=model,
            key=key,
            skey=self._skey(api, tenant, model, key, prompt),
            cacheable=self._cacheable(api, body, nondeterministic),
            nondeterministic=nondeterministic,
        )

    def _skey(self, api: Api, tenant: str, model: ModelInfo, key: str, prompt: str | None) -> str:
        return storage_key(
            self.namespace, api.kind, tenant, model.name, key, prompt, tagged=self.tagged
        )

    def _cacheable(self, api: Api, body: dict[str, Any], nondeterministic: bool) -> bool:
        return not api.bypass(body) and (self.cache_nondeterministic or not nondeterministic)

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
