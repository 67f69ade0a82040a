"""Which requests may be answered by meaning, and what must match exactly for them.

A request is eligible only when its answer depends on nothing but text: a chat request
(its body has `messages`) whose last message is the user's, in text, with no `tools`,
`tool_choice`, `functions`, `function_call`, `response_format`, `n` > 1, audio output,
and no image, audio or file part in any message. Everything else is never a semantic hit.

The *scope* is a digest of everything but the last user message's text: the tenant, the
API, the model and every other parameter of the canonical body (`Api.key_body`, so the
fields that never change an answer are out), and every earlier message, system prompt
included. Two requests are compared by meaning only within one scope, and the index
filters on it before its nearest-neighbour search, so a hit can never cross a tenant, a
system prompt, an earlier turn or a parameter.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from genai_api.keys import canonical_key

_EXCLUDED = ("tools", "tool_choice", "functions", "function_call", "response_format", "audio")
_PLACEHOLDER = "\x00semantic\x00"  # stands for the compared text inside the scope's digest


@dataclass(frozen=True, slots=True)
class Query:
    """An eligible request: its scope (hex) and the text compared by meaning."""

    scope: str
    text: str


def query_of(api_name: str, key_body: dict[str, Any], tenant: str) -> Query | None:
    """The `Query` of a request whose canonical body is `key_body`, or None when it may not
    be answered by meaning."""
    messages = key_body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    if any(key_body.get(name) not in (None, [], {}) for name in _EXCLUDED):
        return None
    n = key_body.get("n")
    if n is not None and n != 1:
        return None
    modalities = key_body.get("modalities")
    if isinstance(modalities, list) and any(m != "text" for m in modalities):
        return None
    if not all(isinstance(m, dict) and _text_only(m.get("content")) for m in messages):
        return None
    last = messages[-1]
    text = _text(last.get("content"))
    if last.get("role") != "user" or not text.strip() or set(last) - {"role", "content"}:
        return None  # e.g. a `name` on the message: part of what is asked, not comparable
    rest = copy.copy(key_body)
    rest["messages"] = [*messages[:-1], {"role": "user", "content": _PLACEHOLDER}]
    return Query(canonical_key(api_name, rest, tenant=tenant), text)


def _text_only(content: object) -> bool:
    if content is None or isinstance(content, str):
        return True
    if isinstance(content, list):
        return all(isinstance(p, dict) and p.get("type") == "text" for p in content)
    return False


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""
