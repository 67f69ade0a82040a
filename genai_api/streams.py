"""Stream chunks ⇄ whole completions, so one stored entry answers both kinds of request.

`assemble(chunks)` builds the `chat.completion` / `text_completion` object a non-streamed
request would have got: text joined, `tool_calls` merged by index with their argument
fragments joined, `reasoning_content` / `refusal` joined, logprobs lists concatenated,
the last `finish_reason`, the usage chunk's usage, `n > 1` choices by index. Fields this
module does not know are merged the same generic way (strings joined, lists extended,
objects merged, anything else last-wins), so a provider's extras survive too.

`synthesize(response)` goes the other way for an entry stored by a non-streamed call: a
well-formed stream (a content chunk and a finish chunk per choice, then the usage chunk).

    >>> assemble(chunks)["choices"][0]["message"]["content"]  # doctest: +SKIP
    'Hello there!'
"""

from __future__ import annotations

import copy
from typing import Any

from genai_api.errors import ProviderError

# Keys whose value is an identity, not a fragment: the last one seen wins.
_SET_KEYS = frozenset({"index", "id", "type", "role"})
_CHUNK_META = ("id", "created", "model", "system_fingerprint", "service_tier")


class IncompleteStream(ProviderError):
    """The provider's stream ended without finishing every choice."""

    def __init__(
        self,
        message: str = "The upstream stream ended before it finished.",
        code: str = "upstream_stream_incomplete",
    ) -> None:
        super().__init__(message, status_code=502, body={"code": code})


class StreamCut(IncompleteStream):
    """The connection carrying the provider's stream broke before the stream ended (a chunked
    body cut short, a reset). The HTTP client's own words for it ("Response payload is not
    completed: <TransferEncodingError: 400 ...>") name its internals, not what happened."""

    def __init__(self) -> None:
        super().__init__(
            "The upstream provider cut the stream before it finished.", "upstream_stream_cut"
        )


def upstream_body(body: dict[str, Any]) -> dict[str, Any]:
    """The body of a streamed provider call: usage always asked for, so the entry has it."""
    options = body.get("stream_options")
    options = dict(options) if isinstance(options, dict) else {}
    options["include_usage"] = True
    return {**body, "stream": True, "stream_options": options}


def wants_usage(body: dict[str, Any]) -> bool:
    """Whether the client asked for the usage chunk (`stream_options.include_usage`)."""
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def for_client(chunk: dict[str, Any], include_usage: bool) -> dict[str, Any] | None:
    """The chunk as this client would have got it from the provider (None: not sent).

    Usage is always asked of the provider; a client that did not ask gets neither the usage
    chunk nor the `"usage": null` the provider then puts on every other chunk.
    """
    if include_usage or "usage" not in chunk:
        return chunk
    if chunk["usage"] is not None and not chunk.get("choices"):
        return None
    return {k: v for k, v in chunk.items() if k != "usage"}


def _merge(into: dict[str, Any], delta: dict[str, Any]) -> None:
    """Merge a stream delta into the accumulated object (openai-python's algorithm, extended)."""
    for key, value in delta.items():
        if value is None:
            into.setdefault(key, None)
            continue
        old = into.get(key)
        if old is None or key in _SET_KEYS:
            into[key] = copy.deepcopy(value)
        elif isinstance(old, str) and isinstance(value, str):
            into[key] = old + value
        elif isinstance(old, dict) and isinstance(value, dict):
            _merge(old, value)
        elif isinstance(old, list) and isinstance(value, list):
            _merge_list(old, value)
        else:
            into[key] = copy.deepcopy(value)


def _merge_list(old: list[Any], new: list[Any]) -> None:
    """Items with an `index` (tool calls) merge into their slot; anything else is appended."""
    for item in new:
        if isinstance(item, dict) and isinstance(item.get("index"), int):
            slot = next(
                (o for o in old if isinstance(o, dict) and o.get("index") == item["index"]), None
            )
            if slot is not None:
                _merge(slot, item)
                continue
        old.append(copy.deepcopy(item))


def _strip_indexes(message: dict[str, Any]) -> None:
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        calls.sort(key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0)
        for call in calls:
            if isinstance(call, dict):
                call.pop("index", None)


def assemble(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole completion the chunks make up; `IncompleteStream` if a choice is unfinished."""
    if not chunks:
        raise IncompleteStream("The upstream stream carried no chunks.")
    # By shape, not only by `object`, which some OpenAI-compatible servers leave out.
    chat = chunks[0].get("object") == "chat.completion.chunk" or any(
        "delta" in part for chunk in chunks for part in chunk.get("choices") or ()
    )
    response: dict[str, Any] = {
        "id": None,
        "object": "chat.completion" if chat else "text_completion",
        "created": None,
        "model": None,
    }
    choices: dict[int, dict[str, Any]] = {}
    usage: Any = None
    for chunk in chunks:
        for name in _CHUNK_META:
            if chunk.get(name) is not None:
                response[name] = chunk[name]
        if chunk.get("usage") is not None:
            usage = chunk["usage"]
        for part in chunk.get("choices") or ():
            index = int(part.get("index") or 0)
            choice = choices.setdefault(index, _empty_choice(index, chat))
            for key, value in part.items():
                if key == "delta" and isinstance(value, dict):
                    _merge(choice["message"], value)
                elif key == "text" and isinstance(value, str):
                    choice["text"] += value
                elif key == "logprobs" and isinstance(value, dict):
                    if choice["logprobs"] is None:
                        choice["logprobs"] = {}
                    _merge(choice["logprobs"], value)
                elif key not in ("index", "delta", "text", "logprobs") and value is not None:
                    choice[key] = value
    if not choices or any(c["finish_reason"] is None for c in choices.values()):
        raise IncompleteStream()
    ordered = [choices[i] for i in sorted(choices)]
    for choice in ordered:
        if chat:
            _strip_indexes(choice["message"])
    response["choices"] = ordered
    if usage is not None:
        response["usage"] = usage
    return response


def _empty_choice(index: int, chat: bool) -> dict[str, Any]:
    if chat:
        return {
            "index": index,
            "message": {"role": "assistant", "content": None, "refusal": None},
            "logprobs": None,
            "finish_reason": None,
        }
    return {"index": index, "text": "", "logprobs": None, "finish_reason": None}


def synthesize(response: dict[str, Any]) -> list[dict[str, Any]]:
    """A well-formed stream for a whole completion: per choice a content chunk and a finish
    chunk, then the usage chunk. Every chunk carries `"usage": null` as the provider's do
    when usage was asked for (`for_client` strips it for clients that did not ask)."""
    chat = response.get("object") == "chat.completion" or any(
        "message" in choice for choice in response.get("choices") or ()
    )
    base: dict[str, Any] = {k: response[k] for k in _CHUNK_META if k in response}
    base["object"] = "chat.completion.chunk" if chat else "text_completion"
    chunks: list[dict[str, Any]] = []
    for choice in response.get("choices") or ():
        index = choice.get("index", 0)
        extras = {
            k: v
            for k, v in choice.items()
            if k not in ("index", "message", "text", "logprobs", "finish_reason")
        }
        first: dict[str, Any] = {"index": index, "logprobs": choice.get("logprobs")}
        last: dict[str, Any] = {"index": index, "logprobs": None}
        if chat:
            delta = copy.deepcopy(choice.get("message") or {})
            for position, call in enumerate(delta.get("tool_calls") or ()):
                if isinstance(call, dict):
                    call["index"] = position
            first["delta"] = delta
            last["delta"] = {}
        else:
            first["text"] = choice.get("text", "")
            last["text"] = ""
        first["finish_reason"] = None
        last["finish_reason"] = choice.get("finish_reason")
        chunks.append({**base, "choices": [{**first, **extras}], "usage": None})
        chunks.append({**base, "choices": [last], "usage": None})
    if response.get("usage") is not None:
        chunks.append({**base, "choices": [], "usage": response["usage"]})
    return chunks
