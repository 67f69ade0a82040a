"""What every API's request schema shares: strict pydantic models, their errors worded as
OpenAI words them, and the plain-type shortcut that spares a cache hit the schema.

Validation only: the body sent upstream is the client's own JSON (minus gateway fields),
so parameters the models do not name still reach the provider (`extra="allow"`). Strict
mode, because OpenAI rejects `"2"` where it wants `2`, and so do we. Every standard
parameter of OpenAI's API reference has its type: a lax upstream (or the mock) answers
`"tools": "nope"`, and that answer would be stored. The types are only as narrow as the
reference's: objects are `dict[str, Any]` inside, and names from a list that grows
(`reasoning_effort`, `service_tier`, ...) are `str`, not literals.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from genai_api.errors import InvalidRequest

MAX_N = 128
MAX_MESSAGES = 10_000
MAX_OUTPUT_TOKENS = 10_000_000
# Token ids of a model whose tokenizer we do not know: no vocabulary comes near 2**31.
MAX_TOKEN_ID = 2**31 - 1
Object = dict[str, Any]  # a JSON object, its content the provider's to judge
TokenId = Annotated[int, Field(ge=0, le=MAX_TOKEN_ID)]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    include_usage: bool | None = None


class SamplingParams(BaseModel):
    """The parameters chat and completions share."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1, max_length=256)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int | None = Field(None, ge=1, le=MAX_N)
    max_tokens: int | None = Field(None, ge=1, le=MAX_OUTPUT_TOKENS)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    stop: str | list[str] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    logit_bias: dict[str, float] | None = None  # token id -> bias
    user: str | None = None
    cache: dict[str, Any] | None = None


Bounds = dict[str, tuple[type, float, float]]  # field: (int or float, low, high)


class Shortcut:
    """A check of the commonest valid body of one schema in plain Python (~1 µs), so a hit
    need not pay strict pydantic (~10 µs, as much as the rest of parsing). It must never pass
    what the schema rejects: a field it does not know how to check sends the body to the
    schema. `numbers` are checked here; `checked` are fields the caller checked itself;
    every other field the schema types is `other`, and its presence means "ask pydantic".
    """

    def __init__(self, schema: type[BaseModel], numbers: Bounds, checked: Iterable[str]) -> None:
        self.numbers = numbers
        self.other = frozenset(schema.model_fields) - {*checked, *numbers}

    def passes(self, body: dict[str, Any]) -> bool:
        """The model name, `numbers`, no `other` field, and plain `stream`/`user`/`cache`."""
        model = body.get("model")
        if type(model) is not str or not 0 < len(model) <= 256:
            return False
        for name, value in body.items():
            bounds = self.numbers.get(name)
            if bounds is not None:
                kind, low, high = bounds
                if value is None:
                    continue
                if type(value) is not int and (kind is int or type(value) is not float):
                    return False
                if not low <= value <= high:
                    return False
            elif name in self.other:
                return False
        return (
            type(body.get("stream", False)) is bool
            and type(body.get("user", "")) is str
            and type(body.get("cache", {})) is dict
        )


def validate(model: type[BaseModel], body: dict[str, Any]) -> None:
    """Raise `InvalidRequest` naming the first offending parameter."""
    try:
        model.model_validate(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0]
        missing = first["type"] == "missing"
        path = _body_path(first["loc"], body, missing=missing)
        param = ".".join(str(p) for p in path) or None
        if missing:
            message = f"Missing required parameter: '{param}'."
        else:
            # A parameter of several types (`tool_choice`: a string or an object) fails once
            # per type, all at the same place: say each ("should be a valid string, or a
            # valid dictionary"), not only the first.
            reasons = [
                e["msg"] for e in errors if _body_path(e["loc"], body, missing=False) == path
            ]
            head, *rest = dict.fromkeys(reasons)
            said = ", or ".join([head, *(r.removeprefix("Input should be ") for r in rest)])
            message = f"Invalid value for '{param}': {said}."
        raise InvalidRequest(message, param=param, code="invalid_value") from None


def _body_path(loc: tuple[int | str, ...], body: Any, *, missing: bool) -> list[int | str]:
    """`loc` without pydantic's union-branch tags (`content.str`): only steps into the body.

    A step that does not lead into the body is such a tag, except the last step of a
    `missing` error, which names the absent field.
    """
    path: list[int | str] = []
    node = body
    for i, step in enumerate(loc):
        if isinstance(node, dict) and step in node:
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
            node = node[step]
        elif not (missing and i == len(loc) - 1):
            continue
        path.append(step)
    return path
