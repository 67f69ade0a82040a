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
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from genai_api.errors import NotFound
from genai_api.models.file import read_models_file

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
        return cls(models, closed=file.closed)

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

    def __iter__(self) -> Any:
        return iter(self._models.values())
