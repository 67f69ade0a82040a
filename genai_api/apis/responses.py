"""`POST /v1/responses` (OpenAI's Responses API): its schema, key, stream and usage
(`RESPONSES`).

Cached by chat's rules (CONTRACT §8): the key is the whole canonical body minus `stream`,
`stream_options`, `store`, `metadata`, `user` and the gateway's `cache` (`keys.EXCLUDED_FIELDS`);
`previous_response_id` stays in it (it names an immutable earlier response), and so do
`include` (it changes what the answer holds), `prompt_cache_key` and `safety_identifier`
(as in chat's key). `stream_options` only asks for `obfuscation` padding on streamed
deltas: it leaves the key, and a client that turned obfuscation off gets none on a replay
either. A request with `conversation` or `background: true` bypasses the cache: the upstream
keeps state (a conversation's items, a queued job) that a hit would skip. Under the tenancy
rule (CONTRACT §3), what a request names (`previous_response_id`, files, vector stores) must
be the caller's, and the response ids it is served become the caller's (`references`,
`created`).

Streams are typed events ending `response.completed`, which carries the whole response
(`apis.response_stream`); usage is `input_tokens`/`output_tokens`, stored as prompt and
completion tokens so savings are priced like chat's. Only a completed response is stored:
a whole answer with `status` `incomplete` or `failed` is relayed and not stored, as a
stream ending `response.incomplete` or `response.failed` is not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from genai_api.apis import response_stream as stream
from genai_api.apis.base import Event, View, sampled
from genai_api.apis.response_items import output_texts, prompt_chars, prompt_messages
from genai_api.apis.schema import MAX_MESSAGES, MAX_OUTPUT_TOKENS, Object, Shortcut, validate
from genai_api.errors import GatewayError
from genai_api.keys import canonical_body
from genai_api.savings.usage import estimated
from genai_api.tenancy.ids import answer_ids, referenced_ids

if TYPE_CHECKING:
    from tiktoken import Encoding

    from genai_api.savings.tokenizer import TokenCounter

Role = Literal["user", "assistant", "system", "developer"]


class InputItem(BaseModel):
    """One item of `input`: a message (`role` and `content`) or a typed item (a function
    call, its output, a reasoning item, an item reference...). Fields several item types
    share are typed as broadly as the types that share them."""

    model_config = ConfigDict(extra="allow", strict=True)

    type: str | None = None
    role: Role | None = None
    content: str | list[Object] | None = None
    id: str | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | list[Object] | Object | None = None
    summary: list[Object] | None = None
    status: str | None = None


def _input_kind(value: Any) -> str | None:
    return "text" if isinstance(value, str) else "items" if isinstance(value, list) else None


# Text or items, told apart by type before either is checked: an error inside an item is
# then named by its place (`input.0.role`), not drowned by "should be a valid string".
Input = Annotated[
    Annotated[str, Tag("text")]
    | Annotated[list[InputItem], Field(max_length=MAX_MESSAGES), Tag("items")],
    Discriminator(
        _input_kind,
        custom_error_type="input_type",
        custom_error_message="Input should be a valid string, or a valid list",
    ),
]


class ResponsesStreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    include_obfuscation: bool | None = None


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1, max_length=256)
    input: Input | None = None
    instructions: str | None = None
    tools: list[Object] | None = None
    tool_choice: str | Object | None = None
    text: Object | None = None
    reasoning: Object | None = None
    max_output_tokens: int | None = Field(None, ge=1, le=MAX_OUTPUT_TOKENS)
    max_tool_calls: int | None = Field(None, ge=0)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    # Types are ours to check, ranges the provider's (as for chat's `top_logprobs`).
    top_logprobs: int | None = Field(None, ge=0)
    parallel_tool_calls: bool | None = None
    previous_response_id: str | None = None
    conversation: str | Object | None = None
    prompt: Object | None = None
    store: bool | None = None
    stream: bool | None = None
    stream_options: ResponsesStreamOptions | None = None
    background: bool | None = None
    truncation: str | None = None
    include: list[str] | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    safety_identifier: str | None = None
    service_tier: str | None = None
    context_management: list[Object] | None = None
    cache: dict[str, Any] | None = None


_ROLES = frozenset(get_args(Role))
_MESSAGE_KEYS = frozenset({"role", "content", "type"})
_SHORTCUT = Shortcut(
    ResponsesRequest,
    numbers={
        "temperature": (float, 0, 2),
        "top_p": (float, 0, 1),
        "max_output_tokens": (int, 1, MAX_OUTPUT_TOKENS),
    },
    checked=("model", "input", "instructions", "stream", "user", "cache"),
)


def plainly_valid(body: dict[str, Any]) -> bool:
    """True for the commonest valid body, so the strict schema would pass it: text `input`
    (or messages of a role and text content), text `instructions`, and what `Shortcut`
    checks. `validate` runs otherwise, and words the error."""
    given = body.get("input")
    if type(given) is list:
        if len(given) > MAX_MESSAGES:
            return False
        for item in given:
            if (
                type(item) is not dict
                or type(item.get("content")) is not str
                or type(item.get("role")) is not str
                or item["role"] not in _ROLES
                or not _MESSAGE_KEYS.issuperset(item)
                or item.get("type", "message") != "message"
            ):
                return False
    elif type(given) is not str:
        return False
    return type(body.get("instructions", "")) is str and _SHORTCUT.passes(body)


class ResponsesApi:
    name = "responses"
    kind = "resp"
    path = "/responses"
    schema: type[BaseModel] = ResponsesRequest
    sse_end = b""  # the stream ends with `response.completed`, no `[DONE]`

    def check(self, body: dict[str, Any]) -> None:
        if not plainly_valid(body):
            validate(ResponsesRequest, body)

    def key_body(self, body: dict[str, Any], encoding: Encoding | None) -> dict[str, Any]:
        return canonical_body(body)

    def bypass(self, body: dict[str, Any]) -> bool:
        return body.get("conversation") is not None or body.get("background") is True

    def nondeterministic(self, body: dict[str, Any]) -> bool:
        return sampled(body)  # no `seed` in this API: sampled unless `temperature` is 0

    def stream_body(self, body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "stream": True}  # usage comes in `response.completed` anyway

    def finished(self, event: Event) -> bool:
        return stream.completed(event)

    def storable(self, response: dict[str, Any]) -> bool:
        return stream.storable(response)

    def assemble(self, events: list[Event]) -> dict[str, Any]:
        return stream.assemble(events)

    def synthesize(self, response: dict[str, Any]) -> list[Event]:
        return stream.synthesize(response)

    def client_view(self, body: dict[str, Any]) -> View:
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_obfuscation") is False:
            return stream.without_obfuscation
        return stream.same

    def references(self, body: dict[str, Any]) -> list[tuple[str, str]]:
        # `previous_response_id`, and any file, vector store or conversation the input and
        # tools name (`metadata` aside), by the pass-through's one rule for request bodies.
        return referenced_ids(body)

    def created(self, answer: Event) -> list[tuple[str, str]]:
        # The response's id (a whole answer, or an event carrying the response), and the
        # tracked objects it holds (a code interpreter's container...).
        response = answer.get("response") if "type" in answer else answer
        if not isinstance(response, dict) or not isinstance(response.get("id"), str):
            return []
        return answer_ids(response, created="response")

    def usage(self, response: dict[str, Any]) -> dict[str, Any] | None:
        usage = response.get("usage")
        if not isinstance(usage, dict):
            return None
        prompt = usage.get("input_tokens", usage.get("prompt_tokens"))
        completion = usage.get("output_tokens", usage.get("completion_tokens"))
        if type(prompt) is not int:
            return None
        completion = completion if type(completion) is int else 0
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def count(
        self,
        tokens: TokenCounter,
        model: str,
        encoding: str | None,
        body: dict[str, Any],
        response: dict[str, Any],
    ) -> dict[str, Any]:
        prompt = tokens.count_chat_messages(prompt_messages(body), model, encoding)
        completion = sum(tokens.count_text(t, model, encoding) for t in output_texts(response))
        return estimated(prompt, completion)

    def size(self, body: dict[str, Any], response: dict[str, Any]) -> int:
        return prompt_chars(body) + sum(len(t) for t in output_texts(response))

    def sse_event(self, event: Event) -> bytes:
        return stream.sse(event)

    def sse_error(self, error: GatewayError, after: Event | None) -> bytes:
        return stream.sse(stream.error_event(error, after))


RESPONSES = ResponsesApi()
