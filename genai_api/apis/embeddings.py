"""`POST /v1/embeddings`: its request schema and inputs. The embeddings pipeline itself
(every input its own entry and flight) is `genai_api.embeddings`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from genai_api.apis.schema import MAX_TOKEN_ID
from genai_api.errors import InvalidRequest
from genai_api.savings.usage import count_items, estimated, prompt_items

if TYPE_CHECKING:
    from genai_api.savings.tokenizer import TokenCounter

PATH = "/embeddings"
# Inputs per embeddings request. OpenAI takes 2,048; the gateway splits bigger batches into
# provider-sized calls itself, up to 4 of them. The bound is the answer's size: 8,192 vectors
# of 1,536 floats are ~50 MB as float32 and ~140 MB as JSON numbers, held in memory once.
MAX_EMBEDDING_INPUTS = 8192


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1, max_length=256)
    input: str | list[str] | list[int] | list[list[int]]
    dimensions: int | None = Field(None, ge=1, le=65_536)
    encoding_format: Literal["float", "base64"] | None = None
    user: str | None = None
    cache: dict[str, Any] | None = None


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


def count(
    tokens: TokenCounter, model: str, encoding: str | None, body: dict[str, Any]
) -> dict[str, Any]:
    """The usage of an embeddings request, counted (the mock provider reports it)."""
    return estimated(count_items(tokens, prompt_items(body.get("input")), model, encoding), None)
