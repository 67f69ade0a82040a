"""Reads and checks a models file (`MODELS_FILE`, TOML or YAML) for `ModelTable.load`.

Why so strict: the file is read once, at start-up, and whatever it gets wrong is otherwise
found by clients. A negative price made every hit's `X-Cache-Saved-Cost-USD` negative and
`GET /v1/cache/stats` a 500 (a Prometheus counter cannot go down); `closed = "false"`
closed the table (a non-empty string is true); a typo such as `ttll`, or a tokenizer the
gateway does not ship, was ignored. So every problem is a `ConfigError` line naming the
file, the model and the field, and all of them are reported at once:

    models.toml: model 'gpt-4o-mini': input_per_million: must be a number >= 0 (got '-5')

A model's upstream (CONTRACT §7) is checked here too: `base_url` an http(s) URL without
credentials, `api_key_env` the name of a variable that is set (its value is never read
back into a message), `upstream_model` a name, `fallbacks` a list of names. Whether the
fallbacks exist and form no cycle needs the whole table: `ModelTable.load` checks that.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from genai_api.errors import ConfigError
from genai_api.models.environ import environment
from genai_api.savings.tokenizer import DEFAULT_ENCODINGS
from genai_api.semantic.config import DEFAULT_THRESHOLD, SEMANTIC_KEYS, SemanticConfig


@dataclass(frozen=True, slots=True)
class ModelsFile:
    """What a checked file says: the table's two switches and, per model, its settings."""

    closed: bool = False
    builtin: bool = True
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # ModelInfo field -> value


class _Bad(ValueError):
    """One field's problem; the caller adds the file, the model and (unless `echo` is
    False: the value may hold a secret) the value."""

    def __init__(self, message: str, *, echo: bool = True) -> None:
        super().__init__(message)
        self.echo = echo


def read_models_file(path: Path, environ: Mapping[str, str] | None = None) -> ModelsFile:
    """The checked contents of `path`; any problem raises `ConfigError`, one line each.

    `environ`: where `api_key_env` variables must be set (default: the environment and
    `.env`, `genai_api.models.environ`)."""
    data = _parse(path)
    env = environment() if environ is None else environ
    problems: list[str] = []
    problems += [f"{path}: {_unknown(str(key), _TOP)}" for key in data if key not in _TOP]
    switches = {"closed": False, "builtin": True}
    for key in switches:
        if key in data:
            try:
                switches[key] = _boolean(data[key])
            except _Bad as exc:
                problems.append(f"{path}: {key}: {exc} (got {data[key]!r})")
    entries = data.get("models")
    if entries is None:
        entries = {}
    if not isinstance(entries, dict):
        problems.append(f"{path}: models: must be a table of model name -> settings")
        entries = {}
    models: dict[str, dict[str, Any]] = {}
    for name, spec in entries.items():
        where = f"{path}: model {str(name)!r}"
        spec = {} if spec is None else spec  # YAML's `my-model:` with nothing under it
        if not isinstance(spec, dict):
            problems.append(f"{where}: must be a table of settings (got {spec!r})")
            continue
        models[str(name)] = settings = {}
        for key, value in spec.items():
            check = _MODEL_FIELDS.get(str(key))
            if check is None:
                problems.append(f"{where}: {_unknown(str(key), _MODEL_FIELDS)}")
                continue
            try:
                settings[str(key)] = check(value)
            except _Bad as exc:
                shown = f" (got {value!r})" if exc.echo else ""
                problems.append(f"{where}: {key}: {exc}{shown}")
        variable = settings.get("api_key_env")
        if variable is not None and variable not in env:
            problems.append(f"{where}: api_key_env: the variable {variable} is not set")
    if problems:
        raise ConfigError(*problems)
    return ModelsFile(switches["closed"], switches["builtin"], models)


def _parse(path: Path) -> dict[Any, Any]:
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


def _unknown(key: str, known: Any) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
    return f"unknown key {key!r} ({hint})"


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise _Bad("must be true or false, unquoted")
    return value


def _ttl(value: object) -> int:
    # A digit string is read as before; a float is refused rather than truncated.
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _Bad("must be a whole number of seconds, at least 1")
    return value


def _price(value: object) -> Decimal:
    try:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise InvalidOperation
        price = Decimal(str(value).strip())  # str: a float's shortest form, 0.15 not 0.1499…
        if not price.is_finite() or price < 0:
            raise InvalidOperation
    except InvalidOperation:
        raise _Bad('must be a number >= 0, in USD per 1M tokens, e.g. "0.15"') from None
    return price.copy_abs()  # "-0" is 0: a saving is never shown as -0


def _tokenizer(value: object) -> str:
    # The encodings `TokenCounter.load` loads from the package at start-up: any other name
    # would be a request-time failure, or a network fetch an air-gapped gateway cannot make.
    if not isinstance(value, str) or value not in DEFAULT_ENCODINGS:
        raise _Bad(f"must be one of {', '.join(DEFAULT_ENCODINGS)}")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Bad("must be a non-empty string")
    return value


_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _base_url(value: object) -> str:
    """An http(s) URL with a host and no credentials in it: a key lives in a variable
    (`api_key_env`), never in the file, and the URL is logged at start-up."""
    if not isinstance(value, str):
        raise _Bad("must be an http:// or https:// URL")
    try:
        url = urlsplit(value.strip())
        url.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise _Bad("must be an http:// or https:// URL") from None
    if url.scheme not in ("http", "https") or not url.hostname:
        raise _Bad("must be an http:// or https:// URL, e.g. http://vllm:8000/v1")
    if url.username is not None or url.password is not None:
        raise _Bad("must not hold credentials: name the key's variable in api_key_env", echo=False)
    return value.strip().rstrip("/")


def _variable(value: object) -> str:
    # The NAME of the variable: a value that looks like a key (`sk-...`) is refused, so a
    # key pasted here by mistake never reaches a log line (it is not echoed back either).
    if not isinstance(value, str) or not _VARIABLE.fullmatch(value):
        raise _Bad("must be the name of an environment variable, e.g. VLLM_API_KEY", echo=False)
    return value


def _fallbacks(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _Bad('must be a list of model names, e.g. ["gpt-4o-mini"]')
    if len(set(value)) != len(value):
        raise _Bad("names a model twice")
    return tuple(value)


def _semantic(value: object) -> SemanticConfig:
    # Opting a model in to answers written for other prompts: every key is checked, and an
    # unknown one (a typo of `threshold`) is refused rather than left at its default.
    if not isinstance(value, dict):
        raise _Bad('must be a table, e.g. { embedding_model = "text-embedding-3-small" }')
    unknown = [str(k) for k in value if k not in SEMANTIC_KEYS]
    if unknown:
        raise _Bad(_unknown(unknown[0], SEMANTIC_KEYS))
    model = value.get("embedding_model")
    if not isinstance(model, str) or not model.strip():
        raise _Bad("embedding_model: must name the embedding model (a non-empty string)")
    threshold = value.get("threshold", DEFAULT_THRESHOLD)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise _Bad("threshold: must be a number between 0 and 1")
    if not 0 < threshold <= 1:
        raise _Bad("threshold: must be a number between 0 and 1")
    strict = value.get("strict", True)
    if not isinstance(strict, bool):
        raise _Bad("strict: must be true or false, unquoted")
    return SemanticConfig(model, float(threshold), strict)


_TOP = ("closed", "builtin", "models")
_MODEL_FIELDS: dict[str, Callable[[object], Any]] = {
    "ttl": _ttl,
    "input_per_million": _price,
    "output_per_million": _price,
    "tokenizer": _tokenizer,
    "owned_by": _text,
    "base_url": _base_url,
    "api_key_env": _variable,
    "upstream_model": _text,
    "fallbacks": _fallbacks,
    "sliding": _boolean,
    "semantic": _semantic,
}
