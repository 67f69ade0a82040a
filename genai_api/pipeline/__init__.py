"""The one request pipeline every endpoint shares: key → lookup → coalesce → provider →
store → account.

- `core`: `Pipeline`, the steps themselves, for single answers, streams and embedding batches;
- `call`: `Call`, one request as the pipeline sees it (its `Api`, model, controls, keys),
  and `prepare`: `Preparer`, which makes one of a checked body;
- `expiry`: the TTL an entry is stored with, and what a sliding hit gives back;
- `answering`: a provider call, whole or streamed, made into the entry it stores;
- `embedding_batches`: an embeddings request keyed per input, run, and made again for
  fallbacks (the per-input steps are `genai_api.embeddings.runner`'s);
- `answers`: `Answers`/`Outcome`, what a request was answered with and how it is counted;
- `variants`: several answers per key for sampled requests, and regenerates;
- `fallbacks`: a model's fallbacks, tried in order when its upstream fails.

Nothing is imported here: `genai_api.pipeline.call` is needed by modules the core itself
imports (rendering, tenancy), so importing the core from this package would make a cycle.
"""
