"""Canonical cache keys: SHA-256 over canonical JSON of everything that changes the output.

Canonical JSON = sorted keys, compact separators, UTF-8 (orjson). Fields that never change
the answer are dropped, and a few parameters equal to the provider's documented default are
dropped too, so `{"n": 1}` and `{}` share an entry. `KEY_VERSION` is part of every key: bump
it when the stored entry's shape changes and old entries simply stop matching.

    >>> request_key("chat", {"model": "m", "messages": []}, tenant="t")[:8]  # doctest: +SKIP
    '3f1c...'
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import orjson

# Tenant segments that are not a client key's id: every client under CACHE_SCOPE=shared, and
# a client with no bearer on an open gateway.
SHARED_TENANT = "shared"
ANONYMOUS = "anon"

KEY_VERSION = 1
# Embedding inputs: 2 since they hash a shared prefix and then the input (see `embedding_keys`).
EMBEDDING_KEY_VERSION = 2

# Fields that do not change the provider's output (CONTRACT §4).
EXCLUDED_FIELDS = frozenset({"stream", "stream_options", "user", "metadata", "store", "cache"})

# Parameters whose default, when sent explicitly, gives the same output as leaving them out.
_DEFAULTS: dict[str, Any] = {
    "n": 1,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "temperature": 1,
    "top_p": 1,
    "logprobs": False,
}
_FLOAT_PARAMS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")


def _is_default(value: Any, default: Any) -> bool:
    # bool is an int in Python: True must not pass for n=1, nor 0 for logprobs=False.
    if isinstance(default, bool) or isinstance(value, bool):
        return value is default
    return type(value) in (int, float) and value == default


def canonical_body(body: dict[str, Any]) -> dict[str, Any]:
    """The request body reduced to what changes the output."""
    out: dict[str, Any] = {}
    for name, value in body.items():
        if name in EXCLUDED_FIELDS:
            continue
        if name in _DEFAULTS and _is_default(value, _DEFAULTS[name]):
            continue
        if name in _FLOAT_PARAMS and type(value) is int:
            value = float(value)  # 1 and 1.0 are the same temperature
        out[name] = value
    return out


def digest(payload: dict[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of `payload`."""
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


def request_key(endpoint: str, body: dict[str, Any], *, tenant: str) -> str:
    """The cache key of a request (the `X-Cache-Key` header value).

    The tenant is hashed in, so a key seen by one client says nothing about another's.
    """
    return canonical_key(endpoint, canonical_body(body), tenant=tenant)


def canonical_key(endpoint: str, canonical: dict[str, Any], *, tenant: str) -> str:
    """`request_key` of a body already reduced to what changes the output (`Api.key_body`)."""
    return digest({"v": KEY_VERSION, "e": endpoint, "t": tenant, "b": canonical})


def embedding_keys(
    model: str,
    items: Sequence[str | list[int]],
    *,
    dimensions: int | None,
    tenant: str,
    extra: dict[str, Any] | None = None,
) -> list[str]:
    """The cache key of each embedding input; `encoding_format` is deliberately not in them.

    SHA-256 over the canonical JSON of what the inputs share (tenant, model, `dimensions`,
    `extra`), a newline, then the input's own JSON. The shared part is hashed once and the
    hash state copied per input, which costs a third of hashing a document per input.
    JSON never holds a raw newline, so the split between the two parts is unambiguous.

    `extra`: other parameters the provider may use (an OpenAI-compatible server's own, e.g.
    `input_type`), keyed too; none leaves the key as it always was.
    """
    shared: dict[str, Any] = {"v": EMBEDDING_KEY_VERSION, "e": "embeddings", "t": tenant}
    shared.update(m=model, d=dimensions)
    if extra:
        shared["x"] = canonical_body(extra)
    base = hashlib.sha256(orjson.dumps(shared, option=orjson.OPT_SORT_KEYS) + b"\n")
    keys = []
    for item in items:
        h = base.copy()
        h.update(orjson.dumps(item))
        keys.append(h.hexdigest())
    return keys


def embedding_key(
    model: str,
    item: str | list[int],
    *,
    dimensions: int | None,
    tenant: str,
    extra: dict[str, Any] | None = None,
) -> str:
    """The cache key of one embedding input (see `embedding_keys`)."""
    return embedding_keys(model, [item], dimensions=dimensions, tenant=tenant, extra=extra)[0]


def segment(value: str) -> str:
    """A Redis key segment free of ':' and glob characters, so SCAN MATCH stays exact."""
    return quote(value, safe="-._~/@+=")


def storage_key(
    namespace: str,
    kind: str,
    tenant: str,
    model: str,
    digest_hex: str,
    prompt: str | None = None,
    *,
    tagged: bool = False,
) -> str:
    """Where an entry lives in the store: readable, and selectable by each invalidation field.

    Layout: ``{namespace}:e:{kind}:{tenant}:{model}:{prompt or -}:{sha256}``. On a Redis
    Cluster (`tagged`) the digest is a hash tag, ``...:{<sha256>}`` in braces: the entry, its
    lease and its waiter flag (the same tail under ``:lock:`` and ``:wait:``) then share a
    slot, so one script may touch all three; the digest spreads entries evenly over slots.
    """
    # `storage_prefix`, inlined: this runs on every request (a call costs a hit ~0.1 µs).
    prefix = f"{namespace}:e:{kind}:{tenant}:{segment(model)}:{segment(prompt) if prompt else '-'}:"
    return prefix + "{" + digest_hex + "}" if tagged else prefix + digest_hex


def storage_prefix(
    namespace: str, kind: str, tenant: str, model: str, prompt: str | None = None
) -> str:
    """Everything of `storage_key` before the digest (a batch's inputs share it)."""
    return f"{namespace}:e:{kind}:{tenant}:{segment(model)}:{segment(prompt) if prompt else '-'}:"


def tag(digest_hex: str) -> str:
    """`digest_hex` as a Redis Cluster hash tag: only what is inside the braces is hashed."""
    return "{" + digest_hex + "}"
