"""The configuration a command starts with, checked before it starts anything.

Why: pydantic reports a bad variable as a multi-line `ValidationError` under the field's
snake-case name, and the commands printed it as a traceback; `serve --workers N` would only
have failed inside each worker. `load_config` is called once, in the command's own process,
and raises `ConfigError` with one line per bad variable, naming it and the value it got
(never the value of a secret), or per problem of a file a variable names (`MODELS_FILE`,
`PROMPTS_DIR`), for the command to print before it exits with status 2:

    CACHE_BACKEND: must be 'memory' or 'redis' (got 'foo')
"""

from __future__ import annotations

import sys
from typing import get_args

from pydantic import SecretStr, ValidationError
from pydantic_core import ErrorDetails

from genai_api.errors import ConfigError
from genai_api.models.table import ModelTable
from genai_api.prompts import PromptLibrary
from genai_api.semantic import build as semantic
from genai_api.settings import Settings

EXIT_CONFIG = 2  # what `serve` and `warm` exit with on a ConfigError
_SHOWN = 40  # characters of a bad value quoted back


def load_settings() -> Settings:
    """`Settings()` from the environment and `.env`; any problem raises `ConfigError`."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(*(_line(error) for error in exc.errors())) from None


def load_config() -> Settings:
    """`load_settings`, then the files it names read and checked as the app will read them.

    The models file and the prompt templates are read again by each app's lifespan; read
    here first, a missing or broken one is one line naming it instead of a traceback and
    "Application startup failed" in every worker.
    """
    settings = load_settings()
    problems: list[str] = []
    try:
        models = ModelTable.load(settings.models_file)
    except ConfigError as exc:
        problems += [f"MODELS_FILE {problem}" for problem in exc.problems]
    else:
        try:
            semantic.check_server(settings, models)  # a server without FT.*: exit 2
        except ConfigError as exc:
            problems += exc.problems
    try:
        PromptLibrary.load(settings.prompts_dir)
    except ConfigError as exc:
        problems += [f"PROMPTS_DIR {problem}" for problem in exc.problems]
    if problems:
        raise ConfigError(*problems)
    return settings


def report(error: ConfigError) -> int:
    """Print `error` to stderr, one line per problem; the exit status for it."""
    for problem in error.problems:
        print(f"genai-api: {problem}", file=sys.stderr)
    return EXIT_CONFIG


def _line(error: ErrorDetails) -> str:
    field = str(error["loc"][0]) if error["loc"] else ""
    name = field.upper() or "configuration"
    line = f"{name}: {_says(error)}"
    if field in Settings.model_fields and not _secret(field):
        shown = repr(error["input"])
        line += f" (got {shown[:_SHOWN]}{'...' if len(shown) > _SHOWN else ''})"
    return line


def _says(error: ErrorDetails) -> str:
    """What the value must be, in words, for the error types a variable can meet."""
    ctx = error.get("ctx") or {}
    kind = error["type"]
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind == "literal_error":
        return f"must be {ctx['expected']}"
    bounds = {
        "greater_than": "more than",
        "greater_than_equal": "at least",
        "less_than": "less than",
        "less_than_equal": "at most",
    }
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"must be {bounds[kind]} {f'{limit:g}' if isinstance(limit, float) else limit}"
    words = {
        "int_parsing": "must be a whole number",
        "int_from_float": "must be a whole number",
        "float_parsing": "must be a number",
        "bool_parsing": "must be true or false",
        "string_too_short": "must not be empty",
    }
    return words.get(kind, error["msg"])


def _secret(field: str) -> bool:
    annotation = Settings.model_fields[field].annotation
    return annotation is SecretStr or SecretStr in get_args(annotation)
