"""Which models the gateway knows: TTL, prices per 1M tokens and tokenizer per model.

A built-in table of common OpenAI models ships with the package; `MODELS_FILE` (TOML or
YAML, read and checked by `genai_api.models.file`) overrides and extends it, and may close
the list (`closed = true`), after which unknown models are answered with 404 instead of
being passed through.

Example models file (TOML)::

    closed = false
    [models."gpt-4o-mini"]
    ttl = 86400
    input_per_million = "0.15"
    output_per_million = "0.60"
    tokenizer = "o200k_base"
    sliding = true        # each hit sets the entry's TTL back to what it was stored with

    [models."llama-3.1-8b"]             # an upstream of its own (CONTRACT §7)
    base_url = "http://vllm:8000/v1"
    upstream_model = "meta-llama/Llama-3.1-8B-Instruct"
    fallbacks = ["gpt-4o-mini"]

Fallbacks name table models and chain: a fallback's own fallbacks are tried before the next
one in the list (as LiteLLM's nested fallbacks are), so a cycle is refused at start-up, and
a model already tried through an earlier fallback is left out of the list.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from genai_api.errors import ConfigError, NotFound
from genai_api.models.file import read_models_file
from genai_api.semantic.config import SemanticConfig

MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the gateway needs to know about one model."""

    name: str
    ttl: int | None = None
    input_per_million: Decimal = Decimal(0)
    output_per_million: Decimal = Decimal(0)
    tokenizer: str | None = None
    owned_by: str = "openai"
    sliding: bool = False  # a hit restores the entry's full TTL (see README "Cache semantics")
    base_url: str | None = None  # its own upstream; None: OPENAI_BASE_URL
    api_key_env: str | None = None  # the variable holding that upstream's key
    upstream_model: str | None = None  # the name sent upstream, when not the public one
    fallbacks: tuple[str, ...] = ()  # tried in order when its upstream fails (pruned)
    semantic: SemanticConfig | None = None  # opted in to semantic hits (models file)

    @property
    def own_upstream(self) -> bool:
        """Called through an upstream of its own, not OPENAI_BASE_URL with OPENAI_API_KEY."""
        return self.base_url is not None or self.api_key_env is not None

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        """What the provider charges for this usage, in USD (exact decimal arithmetic)."""
        return _cost(
            self.input_per_million, self.output_per_million, prompt_tokens, completion_tokens
        )


@lru_cache(maxsize=4096)  # every hit of an entry costs the same: compute it once
def _cost(input_pm: Decimal, output_pm: Decimal, prompt: int, completion: int) -> Decimal:
    return (Decimal(prompt) * input_pm + Decimal(completion) * output_pm) / MILLION


def _m(name: str, inp: str, out: str, tok: str) -> ModelInfo:
    return ModelInfo(name, None, Decimal(inp), Decimal(out), tok)


# Public list prices (USD per 1M tokens, standard tier) at the time of writing; operators
# with other contracts override them in MODELS_FILE.
BUILTIN_MODELS: tuple[ModelInfo, ...] = (
    _m("gpt-5", "1.25", "10.00", "o200k_base"),
    _m("gpt-5-mini", "0.25", "2.00", "o200k_base"),
    _m("gpt-5-nano", "0.05", "0.40", "o200k_base"),
    _m("gpt-4.1", "2.00", "8.00", "o200k_base"),
    _m("gpt-4.1-mini", "0.40", "1.60", "o200k_base"),
    _m("gpt-4.1-nano", "0.10", "0.40", "o200k_base"),
    _m("gpt-4o", "2.50", "10.00", "o200k_base"),
    _m("gpt-4o-mini", "0.15", "0.60", "o200k_base"),
    _m("o3", "2.00", "8.00", "o200k_base"),
    _m("o3-mini", "1.10", "4.40", "o200k_base"),
    _m("o4-mini", "1.10", "4.40", "o200k_base"),
    _m("gpt-4-turbo", "10.00", "30.00", "cl100k_base"),
    _m("gpt-3.5-turbo", "0.50", "1.50", "cl100k_base"),
    _m("gpt-3.5-turbo-instruct", "1.50", "2.00", "cl100k_base"),
    _m("text-embedding-3-small", "0.02", "0", "cl100k_base"),
    _m("text-embedding-3-large", "0.13", "0", "cl100k_base"),
    _m("text-embedding-ada-002", "0.10", "0", "cl100k_base"),
)


OTHER = "other"


def bounded_label(known: frozenset[str], model: object) -> str:
    """`model` if it is a table model, else `other`.

    Counters and metric labels keyed by a client-sent name would grow with every name a
    client invents on an open table; folding unknown names keeps them bounded.
    """
    return model if isinstance(model, str) and model in known else OTHER


def fallback_problems(models: dict[str, ModelInfo]) -> list[str]:
    """A line per fallback that names no table model, and per model on a fallback cycle."""
    problems = []
    for info in models.values():
        for name in info.fallbacks:
            if name not in models:
                problems.append(
                    f"model {info.name!r}: fallbacks: unknown model {name!r} (not in the table)"
                )
    if problems:
        return problems
    on_cycles: set[str] = set()  # a cycle is reported once, at its first model
    for info in models.values():
        cycle = None if info.name in on_cycles else _cycle(models, [info.name])
        if cycle is not None:
            on_cycles.update(cycle)
            loop = " -> ".join(cycle)
            problems.append(f"model {info.name!r}: fallbacks: a cycle ({loop})")
    return problems


def _cycle(models: dict[str, ModelInfo], path: list[str]) -> list[str] | None:
    """The first fallback path from `path[-1]` that comes back to `path[0]`, if any."""
    for name in models[path[-1]].fallbacks:
        if name == path[0]:
            return [*path, name]
        if name not in path:
            found = _cycle(models, [*path, name])
            if found is not None:
                return found
    return None


def chain_fallbacks(models: dict[str, ModelInfo]) -> dict[str, ModelInfo]:
    """Each model's fallbacks without those an earlier one already tries (its own chain):
    with `a: [b, c]` and `b: [c]`, a failing `a` tries b, then c through b, and not c again."""

    def reach(name: str) -> set[str]:
        seen = {name}
        for fallback in models[name].fallbacks:
            seen |= reach(fallback)
        return seen

    chained = dict(models)
    for name, info in models.items():
        kept: list[str] = []
        tried: set[str] = {name}
        for fallback in info.fallbacks:
            if fallback not in tried:
                kept.append(fallback)
                tried |= reach(fallback)
        if tuple(kept) != info.fallbacks:
            chained[name] = replace(info, fallbacks=tuple(kept))
    return chained


class ModelTable:
    """Lookup of `ModelInfo` by name, with the closed-list rule applied in one place."""

    def __init__(self, models: dict[str, ModelInfo], *, closed: bool = False) -> None:
        self._models = models
        self.closed = closed

    @classmethod
    def load(cls, path: Path | None) -> ModelTable:
        """The built-in table, overridden and extended by the file at `path` if given."""
        models = {m.name: m for m in BUILTIN_MODELS}
        if path is None:
            return cls(models)
        file = read_models_file(path)  # checked: any problem raises ConfigError
        if not file.builtin:
            models = {}
        for name, changes in file.models.items():
            models[name] = replace(models.get(name, ModelInfo(name)), **changes)
        problems = [f"{path}: {problem}" for problem in fallback_problems(models)]
        problems += [
            f"{path}: model {m.name!r}: semantic: embedding_model {m.semantic.embedding_model!r}"
            " is not in the models table, which is closed"
            for m in models.values()
            if m.semantic is not None and file.closed and m.semantic.embedding_model not in models
        ]
        if problems:
            raise ConfigError(*problems)
        return cls(chain_fallbacks(models), closed=file.closed)

    @property
    def semantic(self) -> list[ModelInfo]:
        """The models opted in to semantic hits."""
        return [m for m in self._models.values() if m.semantic is not None]

    def get(self, name: str) -> ModelInfo:
        """The model's info; an unknown model is 404 on a closed list, else defaults."""
        info = self._models.get(name)
        if info is not None:
            return info
        if self.closed:
            raise NotFound(
                f"The model '{name}' does not exist or you do not have access to it.",
                param="model",
                code="model_not_found",
            )
        return ModelInfo(name, owned_by="upstream")

    def known(self, name: str) -> ModelInfo | None:
        """The table's entry for `name`, if it has one (no 404, no defaults)."""
        return self._models.get(name)

    def __iter__(self) -> Any:
        return iter(self._models.values())
