"""Request schemas of the OpenAI endpoints we serve, used to reject bad input early.

Validation only: the body sent upstream is the client's own JSON (minus gateway fields),
so parameters these models do not name still reach the provider (`extra="allow"`).
Strict mode, because OpenAI rejects `"2"` where it wants `2`, and so do we.

Every standard parameter of OpenAI's API reference has its type here: a lax upstream (or
the mock) answers `"tools": "nope"`, and that answer would be stored. The types are only
as narrow as the reference's: objects are `dict[str, Any]` inside, and names from a list
that grows (`reasoning_effort`, `service_tier`, ...) are `str`, not literals.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from genai_api.errors import InvalidRequest

MAX_N = 128
MAX_MESSAGES = 10_000
# Inputs per embeddings request. OpenAI takes 2,048; the gateway splits bigger batches into
# provider-sized calls itself, up to 4 of them. The bound is the answer's size: 8,192 vectors
# of 1,536 floats are ~50 MB as float32 and ~140 MB as JSON numbers, held in memory once.
MAX_EMBEDDING_INPUTS = 8192
# Token ids of a model whose tokenizer we do not know: no vocabulary comes near 2**31.
MAX_TOKEN_ID = 2**31 - 1
_Object = dict[str, Any]  # a JSON object, its content the provider's to judge


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    include_usage: bool | None = None


class _Params(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1, max_length=256)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int | None = Field(None, ge=1, le=MAX_N)
    max_tokens: int | None = Field(None, ge=1, le=10_000_000)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    stop: str | list[str] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    logit_bias: dict[str, float] | None = None  # token id -> bias
    user: str | None = None
    cache: dict[str, Any] | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[_Object] | None = None
    tool_call_id: str | None = None
    function_call: _Object | None = None
    refusal: str | None = None
    audio: _Object | None = None


class ChatCompletionRequest(_Params):
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_completion_tokens: int | None = Field(None, ge=1, le=10_000_000)
    metadata: dict[str, str] | None = None
    store: bool | None = None
    tools: list[_Object] | None = None
    tool_choice: str | _Object | None = None
    parallel_tool_calls: bool | None = None
    functions: list[_Object] | None = None  # deprecated for `tools`, still served
    function_call: str | _Object | None = None
    response_format: _Object | None = None
    logprobs: bool | None = None
    # Types are ours to check, ranges the provider's: OpenAI takes up to 20 (5 for completions'
    # `logprobs`), vLLM and others their own, larger limits.
    top_logprobs: int | None = Field(None, ge=0)
    reasoning_effort: str | None = None
    verbosity: str | None = None
    modalities: list[str] | None = None
    audio: _Object | None = None
    prediction: _Object | None = None
    web_search_options: _Object | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None


_TokenId = Annotated[int, Field(ge=0, le=MAX_TOKEN_ID)]


class CompletionRequest(_Params):
    prompt: (
        str
        | Annotated[list[str], Field(min_length=1)]
        | Annotated[list[_TokenId], Field(min_length=1)]
        | Annotated[list[Annotated[list[_TokenId], Field(min_length=1)]], Field(min_length=1)]
    )
    suffix: str | None = None
    echo: bool | None = None
    logprobs: int | None = Field(None, ge=0)  # a count here (a flag in chat)
    best_of: int | None = Field(None, ge=1, le=20)

    @field_validator("prompt", mode="before")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        # Said here, or the error would be the first of the union's: "should be a string".
        if isinstance(value, list) and not value:
            raise PydanticCustomError("too_short", "must not be an empty array")
        return value


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1, max_length=256)
    input: str | list[str] | list[int] | list[list[int]]
    dimensions: int | None = Field(None, ge=1, le=65_536)
    encoding_format: Literal["float", "base64"] | None = None
    user: str | None = None
    cache: dict[str, Any] | None = None


_ROLES = frozenset(ChatMessage.model_fields["role"].annotation.__args__)  # type: ignore[union-attr]
# Typed message fields the shortcut does not check (`tool_calls`...): given, to pydantic.
_MESSAGE_OTHER_TYPED = frozenset(ChatMessage.model_fields) - {"role", "content", "name"}
_NUMBERS: dict[str, tuple[type, float, float]] = {  # field: (int or float, low, high)
    "temperature": (float, 0, 2),
    "top_p": (float, 0, 1),
    "n": (int, 1, MAX_N),
    "max_tokens": (int, 1, 10_000_000),
    "max_completion_tokens": (int, 1, 10_000_000),
    "seed": (int, -(2**63), 2**63 - 1),
}
# Typed fields the shortcut does not check: present, they send the body to pydantic.
_OTHER_TYPED = frozenset(
    set(ChatCompletionRequest.model_fields) | set(CompletionRequest.model_fields)
) - {"model", "messages", "prompt", "stream", "user", "cache", *_NUMBERS}


def plainly_valid(schema: type[BaseModel], body: dict[str, Any]) -> bool:
    """True when a chat or completion body is of the commonest valid form, so the strict
    schema would pass it (~10 µs a hit, as much as the rest of parsing): `validate` runs
    otherwise, and words the error. Fields no schema names are `extra="allow"`: not checked."""
    model = body.get("model")
    if type(model) is not str or not 0 < len(model) <= 256:
        return False
    if schema is ChatCompletionRequest:
        messages = body.get("messages")
        if type(messages) is not list or not 0 < len(messages) <= MAX_MESSAGES:
            return False
        for message in messages:
            if (
                type(message) is not dict
                or type(message.get("role")) is not str
                or message["role"] not in _ROLES
                or type(message.get("content", "")) not in (str, type(None))
                or type(message.get("name", "")) is not str
                or (not _MESSAGE_OTHER_TYPED.isdisjoint(message) and _given(message))
            ):
                return False
    elif schema is not CompletionRequest or type(body.get("prompt")) is not str:
        return False
    for name, value in body.items():
        bounds = _NUMBERS.get(name)
        if bounds is not None:
            kind, low, high = bounds
            if value is None:
                continue
            if type(value) is not int and (kind is int or type(value) is not float):
                return False
            if not low <= value <= high:
                return False
        elif name in _OTHER_TYPED:
            return False
    return (
        type(body.get("stream", False)) is bool
        and type(body.get("user", "")) is str
        and type(body.get("cache", {})) is dict
    )


def _given(message: dict[str, Any]) -> bool:
    """Whether a message gives one of `_MESSAGE_OTHER_TYPED` (a `null`, as SDK dumps of an
    answer's message carry, is valid for each)."""
    for name, value in message.items():
        if value is not None and name in _MESSAGE_OTHER_TYPED:
            return True
    return False


def _bad_input(message: str) -> InvalidRequest:
    return InvalidRequest(message, param="input", code="invalid_value")


def embedding_inputs(value: Any, *, max_token: int | None) -> list[str | list[int]]:
    """The inputs of an embeddings request as a list (a string or one token array: one input).

    Checked before the schema so each mistake gets its own message: an empty list, string or
    token array, items that are not all strings or all token arrays, more than
    `MAX_EMBEDDING_INPUTS`, token ids below 0 or above `max_token` (when the model's tokenizer
    is known).
    """
    if isinstance(value, str):
        items: list[Any] = [value]
    elif isinstance(value, list) and value and all(_is_token(x) for x in value):
        items = [value]
    elif isinstance(value, list):
        items = value
    else:
        raise _bad_input("'input' must be a string, an array of strings or of token arrays.")
    if not items:
        raise _bad_input("'input' must not be an empty array.")
    if len(items) > MAX_EMBEDDING_INPUTS:
        raise _bad_input(
            f"'input' has {len(items)} items; at most {MAX_EMBEDDING_INPUTS} per request."
        )
    kind: type = str if isinstance(items[0], str) else list
    if not isinstance(items[0], kind):
        raise _bad_input("'input[0]' must be a string or an array of token ids.")
    for i, item in enumerate(items):
        if not isinstance(item, kind):
            raise _bad_input(
                f"'input[{i}]' is not like 'input[0]': give all strings or all token arrays."
            )
        if not item:
            raise _bad_input(f"'input[{i}]' is empty.")
        if isinstance(item, list):
            _check_tokens(item, i, max_token)
    return items


def _is_token(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_tokens(ids: list[Any], i: int, max_token: int | None) -> None:
    if not all(_is_token(t) for t in ids):
        raise _bad_input(f"'input[{i}]' must hold integer token ids only.")
    low, high = min(ids), max(ids)
    top = MAX_TOKEN_ID if max_token is None else max_token
    if low < 0 or high > top:
        bad = low if low < 0 else high
        raise _bad_input(f"'input[{i}]' holds token id {bad}, outside 0..{top} for this model.")


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
