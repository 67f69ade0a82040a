"""Named prompt templates from `PROMPTS_DIR/*.toml`, loaded once and rendered safely.

A template file::

    name = "summarise"
    version = "2"
    description = "Summarise a text in a few sentences."
    model = "gpt-4o-mini"

    [parameters]            # default chat parameters; a request may override any of them
    temperature = 0

    [[messages]]
    role = "user"
    content = "Summarise in ${sentences} sentences:\\n\\n${text}"

Placeholders are `${name}` or `{name}` (an identifier). Rendering is one regex pass that
inserts each value verbatim: no attribute or index access (`{a.b}`, `{a[0]}` are plain
text), no format specs, no expressions, and a value is never scanned again, so a value
holding `${other}` or `{__class__}` stays exactly that text. `{{name}}` and `$${name}`
write a literal `{name}` / `${name}`. Missing or unknown variables, and values that are
not strings or numbers, are a 400 naming them.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genai_api.apis.chat import ChatCompletionRequest
from genai_api.apis.schema import validate
from genai_api.errors import ConfigError, InvalidRequest, NotFound

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
# Escapes first, so `{{x}}` is never read as `{x}` wrapped in braces.
_TOKEN = re.compile(rf"\$\$\{{({_IDENT})\}}|\{{\{{({_IDENT})\}}\}}|\$?\{{({_IDENT})\}}")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_ROLES = frozenset({"system", "developer", "user", "assistant"})
_RESERVED_PARAMETERS = frozenset({"messages", "model", "stream", "variables", "prompt"})
_PROBE = {"role": "user", "content": "-"}  # stands in for the messages when checking defaults


class PromptFileError(ConfigError):
    """A template file that cannot be used; raised at start-up, naming the file."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"prompt template {path}: {problem}")
        self.path = path


def placeholders(text: str) -> list[str]:
    """The variable names `text` uses, in order of first appearance (escapes excluded)."""
    names: list[str] = []
    for match in _TOKEN.finditer(text):
        name = match.group(3)
        if name is not None and name not in names:
            names.append(name)
    return names


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace each placeholder by its value in a single pass; values are never re-scanned.

    >>> substitute("Hi ${who}, {{who}} is literal", {"who": "{__class__}"})
    'Hi {__class__}, {who} is literal'
    """

    def replace(match: re.Match[str]) -> str:
        if match.group(1) is not None:
            return "${" + match.group(1) + "}"
        if match.group(2) is not None:
            return "{" + match.group(2) + "}"
        return values[match.group(3)]

    return _TOKEN.sub(replace, text)


def _as_text(name: str, value: object) -> str:
    # bool is an int in Python, but `true` is not a number a prompt should print as "True".
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    kind = {dict: "object", list: "array", bool: "boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )
    raise InvalidRequest(
        f"Variable '{name}' must be a string or a number, not {kind}.",
        param=f"variables.{name}",
        code="invalid_value",
    )


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    name: str
    version: str
    description: str
    model: str
    parameters: dict[str, Any]
    messages: tuple[tuple[str, str], ...]  # (role, content template)
    variables: tuple[str, ...]
    source: Path | None = None

    def render(self, variables: Mapping[str, object]) -> list[dict[str, str]]:
        """The chat messages with `variables` filled in; 400 naming missing/unknown ones."""
        missing = [v for v in self.variables if v not in variables]
        unknown = sorted(v for v in variables if v not in self.variables)
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing variables: {', '.join(missing)}")
            if unknown:
                parts.append(f"unknown variables: {', '.join(unknown)}")
            expected = ", ".join(self.variables) or "none"
            raise InvalidRequest(
                f"Prompt '{self.name}': {'; '.join(parts)} (expected: {expected}).",
                param="variables",
                code="invalid_variables",
            )
        values = {name: _as_text(name, variables[name]) for name in self.variables}
        return [
            {"role": role, "content": substitute(content, values)}
            for role, content in self.messages
        ]

    def request_body(self, variables: object, params: Mapping[str, Any]) -> dict[str, Any]:
        """The chat request: template defaults, then the caller's parameters, then messages."""
        if not isinstance(variables, Mapping):
            raise InvalidRequest(
                "'variables' must be an object mapping names to strings.",
                param="variables",
                code="invalid_value",
            )
        if "messages" in params:
            raise InvalidRequest(
                "A prompt request takes 'variables', not 'messages': the template writes them.",
                param="messages",
            )
        body: dict[str, Any] = {"model": self.model, **self.parameters, **params}
        body["messages"] = self.render(variables)
        return body

    def describe(self) -> dict[str, Any]:
        """The entry of this template in `GET /v1/prompts`."""
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "model": self.model,
            "variables": list(self.variables),
        }


def _text(path: Path, data: Mapping[str, Any], key: str, *, required: bool = True) -> str:
    value = data.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and key == "version":
        value = str(value)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise PromptFileError(path, f"'{key}' must be a non-empty string")
    return value


def parse_template(path: Path, data: Mapping[str, Any]) -> PromptTemplate:
    """Check one decoded template file; any problem raises `PromptFileError` naming it."""
    allowed = {"name", "version", "description", "model", "parameters", "messages"}
    if extra := sorted(set(data) - allowed):
        raise PromptFileError(path, f"unknown field(s): {', '.join(extra)}")
    name = _text(path, data, "name")
    if not _NAME.match(name):
        raise PromptFileError(path, f"name {name!r} must be letters, digits, '-', '_' or '.'")
    parameters = data.get("parameters", {})
    if not isinstance(parameters, dict):
        raise PromptFileError(path, "'parameters' must be a table")
    if reserved := sorted(_RESERVED_PARAMETERS & set(parameters)):
        raise PromptFileError(path, f"'parameters' may not set {', '.join(reserved)}")
    try:  # a bad default is the file's mistake: found here, not blamed on every request
        validate(ChatCompletionRequest, {**parameters, "model": "m", "messages": [_PROBE]})
    except InvalidRequest as exc:
        raise PromptFileError(path, f"'parameters': {exc.message}") from None
    raw_messages = data.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise PromptFileError(path, "'messages' must be a non-empty array of tables")
    messages: list[tuple[str, str]] = []
    variables: list[str] = []
    for i, message in enumerate(raw_messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or set(message) - {"role", "content"}:
            raise PromptFileError(path, f"{where} must be a table with 'role' and 'content'")
        role, content = message.get("role"), message.get("content")
        if role not in _ROLES:
            raise PromptFileError(path, f"{where}.role must be one of {', '.join(sorted(_ROLES))}")
        if not isinstance(content, str) or not content:
            raise PromptFileError(path, f"{where}.content must be a non-empty string")
        messages.append((role, content))
        variables += [v for v in placeholders(content) if v not in variables]
    return PromptTemplate(
        name=name,
        version=_text(path, data, "version"),
        description=_text(path, data, "description", required=False),
        model=_text(path, data, "model"),
        parameters=dict(parameters),
        messages=tuple(messages),
        variables=tuple(variables),
        source=path,
    )


@dataclass(frozen=True)
class PromptLibrary:
    """The templates of one `PROMPTS_DIR`, by name."""

    templates: dict[str, PromptTemplate] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path) -> PromptLibrary:
        """Every `*.toml` in `directory` (none when it does not exist); bad files raise."""
        if not directory.is_dir():
            return cls()
        templates: dict[str, PromptTemplate] = {}
        for path in sorted(directory.glob("*.toml")):
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                raise PromptFileError(path, f"cannot be read as TOML: {exc}") from None
            template = parse_template(path, data)
            if template.name in templates:
                other = templates[template.name].source
                raise PromptFileError(path, f"name {template.name!r} is also used by {other}")
            templates[template.name] = template
        return cls(templates)

    def get(self, name: str) -> PromptTemplate:
        try:
            return self.templates[name]
        except KeyError:
            raise NotFound(
                f"The prompt template '{name}' does not exist.",
                param="name",
                code="prompt_not_found",
            ) from None

    def __iter__(self) -> Iterator[PromptTemplate]:
        return iter(self.templates.values())

    def __len__(self) -> int:
        return len(self.templates)
