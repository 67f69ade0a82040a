"""`POST /v1/chat/completions`: its request schema, key, stream and usage (`CHAT`).

Streams, answers and usage have the shape legacy completions share (`apis.choices`); what
is chat's own is the schema (messages, tools, response formats...) and counting a prompt
made of messages (OpenAI's per-message formula, `TokenCounter.count_chat_messages`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from genai_api.apis.choices import ChoicesApi, answer_texts
from genai_api.apis.schema import (
    MAX_MESSAGES,
    MAX_N,
    MAX_OUTPUT_TOKENS,
    Object,
    SamplingParams,
    Shortcut,
    validate,
)
from genai_api.savings.usage import estimated
from genai_api.tenancy.ids import referenced_ids

if TYPE_CHECKING:
    from genai_api.savings.tokenizer import TokenCounter


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[Object] | None = None
    tool_call_id: str | None = None
    function_call: Object | None = None
    refusal: str | None = None
    audio: Object | None = None


class ChatCompletionRequest(SamplingParams):
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_OUTPUT_TOKENS)
    metadata: dict[str, str] | None = None
    store: bool | None = None
    tools: list[Object] | None = None
    tool_choice: str | Object | None = None
    parallel_tool_calls: bool | None = None
    functions: list[Object] | None = None  # deprecated for `tools`, still served
    function_call: str | Object | None = None
    response_format: Object | None = None
    logprobs: bool | None = None
    # Types are ours to check, ranges the provider's: OpenAI takes up to 20 (5 for completions'
    # `logprobs`), vLLM and others their own, larger limits.
    top_logprobs: int | None = Field(None, ge=0)
    reasoning_effort: str | None = None
    verbosity: str | None = None
    modalities: list[str] | None = None
    audio: Object | None = None
    prediction: Object | None = None
    web_search_options: Object | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None


_ROLES = frozenset(ChatMessage.model_fields["role"].annotation.__args__)  # type: ignore[union-attr]
# Typed message fields the shortcut does not check (`tool_calls`...): given, to pydantic.
_MESSAGE_OTHER_TYPED = frozenset(ChatMessage.model_fields) - {"role", "content", "name"}
_SHORTCUT = Shortcut(
    ChatCompletionRequest,
    numbers={
        "temperature": (float, 0, 2),
        "top_p": (float, 0, 1),
        "n": (int, 1, MAX_N),
        "max_tokens": (int, 1, MAX_OUTPUT_TOKENS),
        "max_completion_tokens": (int, 1, MAX_OUTPUT_TOKENS),
        "seed": (int, -(2**63), 2**63 - 1),
    },
    checked=("model", "messages", "stream", "user", "cache"),
)


def plainly_valid(body: dict[str, Any]) -> bool:
    """True when a chat body is of the commonest valid form, so the strict schema would pass
    it: `validate` runs otherwise, and words the error."""
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
    return _SHORTCUT.passes(body)


def _given(message: dict[str, Any]) -> bool:
    """Whether a message gives one of `_MESSAGE_OTHER_TYPED` (a `null`, as SDK dumps of an
    answer's message carry, is valid for each)."""
    for name, value in message.items():
        if value is not None and name in _MESSAGE_OTHER_TYPED:
            return True
    return False


def _message_chars(body: dict[str, Any]) -> int:
    n = 0
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            n += len(content)
        elif isinstance(content, list):
            n += sum(len(str(p.get("text", ""))) for p in content if isinstance(p, dict))
    return n


class ChatApi(ChoicesApi):
    name = "chat.completions"
    kind = "chat"
    path = "/chat/completions"
    schema: type[BaseModel] = ChatCompletionRequest

    def check(self, body: dict[str, Any]) -> None:
        if not plainly_valid(body):
            validate(ChatCompletionRequest, body)

    def count(
        self,
        tokens: TokenCounter,
        model: str,
        encoding: str | None,
        body: dict[str, Any],
        response: dict[str, Any],
    ) -> dict[str, Any]:
        prompt = tokens.count_chat_messages(body.get("messages") or [], model, encoding)
        completion = sum(tokens.count_text(t, model, encoding) for t in answer_texts(response))
        return estimated(prompt, completion)

    def size(self, body: dict[str, Any], response: dict[str, Any]) -> int:
        return _message_chars(body) + sum(len(t) for t in answer_texts(response))

    def references(self, body: dict[str, Any]) -> list[tuple[str, str]]:
        # A message's content parts may name an uploaded file (`{"type": "file", "file":
        # {"file_id": ...}}`), which the model then reads: it must be the caller's. Only
        # parts can: a plain text message costs one type check, not the body walk (~10 µs).
        found: list[tuple[str, str]] = []
        for position, message in enumerate(body.get("messages") or ()):
            content = message.get("content") if isinstance(message, dict) else None
            if type(content) is list:
                for ref, where in referenced_ids(content):
                    found.append((ref, f"messages.{position}.content.{where}"))
        return found


CHAT = ChatApi()
