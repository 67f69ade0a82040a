"""The one request pipeline every endpoint shares: key → lookup → coalesce → provider →
store → account.

- `core`: `Pipeline`, the steps themselves, for single answers, streams and embedding batches;
- `call`: `Call`, one request as the pipeline sees it (its `Api`, model, controls, keys);
- `answers`: `Answers`/`Outcome`, what a request was answered with and how it is counted;
- `variants`: several answers per key for sampled requests, and regenerates;
- `fallbacks`: a model's fallbacks, tried in order when its upstream fails.

Nothing is imported here: `genai_api.pipeline.call` is needed by modules the core itself
imports (rendering, tenancy), so importing the core from this package would make a cycle.
"""
