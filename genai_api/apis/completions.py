"""`POST /v1/completions` (legacy text completions): its schema, key, stream, usage.

Streams, answers and usage have chat's shape (`apis.choices`); the prompt is text, texts,
token ids or arrays of them, counted with the model's tokenizer (ids count as themselves).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, Field, field_validator
from pydantic_core import PydanticCustomError

from genai_api.apis.choices import ChoicesApi, answer_texts
from genai_api.apis.schema import (
    MAX_N,
    MAX_OUTPUT_TOKENS,
    SamplingParams,
    Shortcut,
    TokenId,
    validate,
)
from genai_api.apis.token_text import text_of, texts_for_key
from genai_api.keys import canonical_body
from genai_api.savings.usage import count_items, estimated, prompt_items

if TYPE_CHECKING:
    from tiktoken import Encoding

    from genai_api.savings.tokenizer import TokenCounter


class CompletionRequest(SamplingParams):
    prompt: (
        str
        | Annotated[list[str], Field(min_length=1)]
        | Annotated[list[TokenId], Field(min_length=1)]
        | Annotated[list[Annotated[list[TokenId], Field(min_length=1)]], Field(min_length=1)]
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


_SHORTCUT = Shortcut(
    CompletionRequest,
    numbers={
        "temperature": (float, 0, 2),
        "top_p": (float, 0, 1),
        "n": (int, 1, MAX_N),
        "max_tokens": (int, 1, MAX_OUTPUT_TOKENS),
        "seed": (int, -(2**63), 2**63 - 1),
    },
    checked=("model", "prompt", "stream", "user", "cache"),
)


def plainly_valid(body: dict[str, Any]) -> bool:
    """True for the commonest valid completion body (a text prompt): see `Shortcut`."""
    return type(body.get("prompt")) is str and _SHORTCUT.passes(body)


class CompletionsApi(ChoicesApi):
    """A prompt of token ids that are exactly some text's tokens is keyed as that text."""

    name = "completions"
    kind = "cmpl"
    path = "/completions"
    schema: type[BaseModel] = CompletionRequest

    def check(self, body: dict[str, Any]) -> None:
        if not plainly_valid(body):
            validate(CompletionRequest, body)

    def key_body(self, body: dict[str, Any], encoding: Encoding | None) -> dict[str, Any]:
        out = canonical_body(body)
        prompt = out.get("prompt")
        if encoding is None or not isinstance(prompt, list) or not prompt:
            return out
        if isinstance(prompt[0], int):  # one token array: one prompt
            text = text_of(prompt, encoding)
            if text is not None:
                out["prompt"] = text
        else:
            out["prompt"] = texts_for_key(prompt, encoding)
        return out

    def count(
        self,
        tokens: TokenCounter,
        model: str,
        encoding: str | None,
        body: dict[str, Any],
        response: dict[str, Any],
    ) -> dict[str, Any]:
        prompt = count_items(tokens, prompt_items(body.get("prompt")), model, encoding)
        completion = sum(tokens.count_text(t, model, encoding) for t in answer_texts(response))
        return estimated(prompt, completion)

    def size(self, body: dict[str, Any], response: dict[str, Any]) -> int:
        prompt = sum(len(item) for item in prompt_items(body.get("prompt")))
        return prompt + sum(len(t) for t in answer_texts(response))


COMPLETIONS = CompletionsApi()
