"""Which headers travel through the pass-through, each way. Both lists are allow-lists: a
header nobody thought of stays behind, rather than leaking a credential or an account detail.

To the upstream, besides the gateway's own (`Authorization: Bearer <OPENAI_API_KEY>`, the
SDK's `User-Agent` and `X-Stainless-*`, and `OpenAI-Organization`/`OpenAI-Project` when the
SDK's `OPENAI_ORG_ID`/`OPENAI_PROJECT_ID` are set):

- `Content-Type`, `Accept`, and for a body streamed as it came `Content-Length` and
  `Content-Encoding` (a body the gateway read is sent with its own length);
- `OpenAI-Beta` (the Assistants API needs `assistants=v2`), `Idempotency-Key` and
  `X-Client-Request-Id` (the client's own retry and tracing ids);
- `Accept-Encoding` on answers relayed byte for byte (`identity` when the client sent none,
  so nothing comes back compressed that the client did not ask for); answers the gateway
  reads (lists, records of new objects) are asked for uncompressed.

Never: the client's `Authorization` (its gateway key), cookies, hop-by-hop headers, the
gateway's cache controls, `OpenAI-Organization`/`OpenAI-Project` (a tenant must not pick
another organisation or project of the gateway's key), forwarding or proxy headers.

Back to the client: the body's `Content-*` headers, `Retry-After(-Ms)`, the rate-limit
headers (`X-RateLimit-*`, so clients back off), `X-Request-Id`, `OpenAI-Processing-Ms`,
`OpenAI-Version`, `ETag`/`Last-Modified`/`Cache-Control` and a redirect's `Location`.
Never the upstream's cookies, `OpenAI-Organization`/`OpenAI-Project` (the gateway account's
identity), `Server`, `Date` (ours is sent) or its CDN's headers.
"""

from __future__ import annotations

from collections.abc import Iterable

import httpx

# Describe the body's bytes: sent only with a body streamed as it came.
BODY_HEADERS = frozenset({"content-length", "content-encoding"})
TO_UPSTREAM = frozenset(
    {
        "content-type",
        "content-length",
        "content-encoding",
        "accept",
        "openai-beta",
        "idempotency-key",
        "x-client-request-id",
    }
)
FROM_UPSTREAM = frozenset(
    {
        "content-type",
        "content-length",
        "content-encoding",
        "content-disposition",
        "content-language",
        "retry-after",
        "retry-after-ms",
        "x-request-id",
        "openai-processing-ms",
        "openai-version",
        "etag",
        "last-modified",
        "cache-control",
        "location",
    }
)
FROM_UPSTREAM_PREFIXES = ("x-ratelimit-",)
# What changes when the gateway re-serialises or decodes an answer.
BODY_FRAMING = frozenset({"content-length", "content-encoding"})


def to_upstream(
    headers: Iterable[tuple[bytes, bytes]], *, streamed: bool, raw_answer: bool
) -> dict[str, str]:
    """The client's headers that go upstream. `streamed`: the body is relayed as it arrives
    (its `Content-Length` still holds); `raw_answer`: the answer is relayed byte for byte (the
    client's `Accept-Encoding` applies), else the gateway reads it and wants it plain."""
    out: dict[str, str] = {}
    encoding = "identity"
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        if name == "accept-encoding":
            if raw_answer:
                encoding = value
        elif name in TO_UPSTREAM and (streamed or name not in BODY_HEADERS):
            out[name] = value
    out["accept-encoding"] = encoding
    return out


def from_upstream(response: httpx.Response, *, reframed: bool) -> list[tuple[bytes, bytes]]:
    """The upstream answer's headers that go back; `reframed`: the body is not the
    upstream's bytes (decoded or rebuilt), so its length and encoding are not relayed."""
    out: list[tuple[bytes, bytes]] = []
    for raw_name, raw_value in response.headers.raw:
        name = raw_name.lower()
        text = name.decode("latin-1")
        if reframed and text in BODY_FRAMING:
            continue
        if text in FROM_UPSTREAM or text.startswith(FROM_UPSTREAM_PREFIXES):
            out.append((name, raw_value))
    return out
