"""Which models the gateway knows: TTL, prices per 1M tokens and tokenizer per model.

A built-in table of common OpenAI models ships with the package; `MODELS_FILE` (TOML or
YAML) overrides and extends it, and may close the list (`closed = true`), after which
unknown models are answered with 404 instead of being passed through.

Example models file (TOML)::

    closed = false
    [models."gpt-4o-mini"]
    ttl = 86400
    input_per_million = "0.15"
    output_per_million = "0.60"
    tokenizer = "o200k_base"
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from genai_api.errors import ConfigError, NotFound

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
        data = _read_file(path)
        closed = bool(data.get("closed", False))
        if data.get("builtin", True) is False:
            models = {}
        entries = data.get("models") or {}
        if not isinstance(entries, dict):
            raise ConfigError(f"{path}: 'models' must be a table of model name -> settings")
        for name, spec in entries.items():
            if not isinstance(spec, dict):
                raise ConfigError(f"{path}: model {name!r} must be a table")
            models[str(name)] = _merge(models.get(str(name), ModelInfo(str(name))), spec, path)
        return cls(models, closed=closed)

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


def _read_file(path: Path) -> dict[str, Any]:
    """The file's top-level table; a file that cannot be read or parsed is one line naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: cannot be read: not UTF-8 text") from None
    if path.suffix.lower() in {".yaml", ".yml"}:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
        data = {} if data is None else data
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a table (mapping) at the top level")
    return data


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's message on one line: what is wrong and where."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"{exc.problem} (at line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(exc).split())


def _merge(base: ModelInfo, spec: dict[str, Any], path: Path) -> ModelInfo:
    changes: dict[str, Any] = {}
    try:
        if "ttl" in spec:
            changes["ttl"] = int(spec["ttl"])
            if changes["ttl"] < 1:
                raise ValueError("ttl must be >= 1")
        for field in ("input_per_million", "output_per_million"):
            if field in spec:
                changes[field] = Decimal(str(spec[field]))
        if "tokenizer" in spec:
            changes["tokenizer"] = str(spec["tokenizer"])
        if "owned_by" in spec:
            changes["owned_by"] = str(spec["owned_by"])
    except (ValueError, ArithmeticError) as exc:
        raise ConfigError(f"{path}: model {base.name!r}: {exc}") from exc
    return replace(base, **changes)
