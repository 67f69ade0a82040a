"""A model's `semantic` setting in the models file: how it may be answered by meaning.

    [models."gpt-4o-mini"]
    semantic = { threshold = 0.98, embedding_model = "text-embedding-3-small" }

Absent (the default) means off: the model only ever gets exact hits. `threshold` is the
lowest cosine similarity a hit may have; `strict` (default true) also requires the two
prompts to hold the same content words, which is the policy `make bench-semantic` found
precise on unseen pairs. Both defaults are the benchmark's figures for all-MiniLM-L6-v2:
another embedding model has its own similarity scale, and should be measured first.
"""

from __future__ import annotations

from dataclasses import dataclass

# bench/semantic: the lowest threshold from which the guarded precision on the development
# pairs stays at 99 % or more, with all-MiniLM-L6-v2 (README "Semantic cache").
DEFAULT_THRESHOLD = 0.98
SEMANTIC_KEYS = ("threshold", "embedding_model", "strict")


@dataclass(frozen=True, slots=True)
class SemanticConfig:
    embedding_model: str
    threshold: float = DEFAULT_THRESHOLD
    strict: bool = True
