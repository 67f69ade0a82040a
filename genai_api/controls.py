"""Per-request cache controls from `Cache-Control`, `X-Cache-TTL` and the body's `cache` object.

The body object is LiteLLM's spelling, accepted so clients can migrate without changes:
`{"cache": {"no-cache": true, "no-store": true, "ttl": N, "s-maxage": N}}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from genai_api.errors import InvalidRequest


@dataclass(frozen=True, slots=True)
class CacheControls:
    """What this request allows the cache to do."""

    read: bool = True
    write: bool = True
    max_age: int | None = None
    ttl: int | None = None

    @property
    def bypass(self) -> bool:
        """Neither read nor store: the request goes straight to the provider."""
        return not self.read and not self.write


DEFAULT_CONTROLS = CacheControls()


def _non_negative_int(value: Any, param: str) -> int:
    if isinstance(value, bool):
        raise InvalidRequest(f"'{param}' must be a non-negative integer.", param=param)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"'{param}' must be a non-negative integer.", param=param) from None
    if number < 0 or (isinstance(value, float) and not value.is_integer()):
        raise InvalidRequest(f"'{param}' must be a non-negative integer.", param=param)
    return number


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Every line of header `name` as one comma-joined value, as HTTP reads repeated lines
    (RFC 9110 §5.3): `Cache-Control: max-age=100` then `Cache-Control: no-store` is
    `max-age=100, no-store`, not just its first line."""
    getlist = getattr(headers, "getlist", None)  # Starlette's Headers; a dict has one line
    if getlist is None:
        return headers.get(name)
    lines: list[str] = getlist(name)
    return ", ".join(lines) if lines else None


def _ttl_header(value: str) -> int:
    """X-Cache-TTL is one number; repeated lines must agree (else which one was meant?)."""
    values = {v.strip() for v in value.split(",")}
    if len(values) > 1:
        raise InvalidRequest("X-Cache-TTL was sent more than once, with different values.",
                             param="X-Cache-TTL")  # fmt: skip
    return _non_negative_int(values.pop(), "X-Cache-TTL")


def parse_controls(headers: Mapping[str, str], body_cache: Any, *, max_ttl: int) -> CacheControls:
    """Merge header and body controls; a malformed value is a 400, never silently ignored."""
    cache_control = _header(headers, "cache-control")
    ttl_header = _header(headers, "x-cache-ttl")
    if cache_control is None and ttl_header is None and body_cache is None:
        return DEFAULT_CONTROLS

    no_cache = no_store = False
    max_age: int | None = None
    ttl: int | None = None
    if cache_control:
        for directive in cache_control.split(","):
            name, _, value = directive.strip().partition("=")
            name = name.strip().lower()
            if name == "no-cache":
                no_cache = True
            elif name == "no-store":
                no_store = True
            elif name in ("max-age", "s-maxage"):
                max_age = _non_negative_int(value.strip().strip('"'), "Cache-Control")
    if ttl_header is not None:
        ttl = _ttl_header(ttl_header)
    if body_cache is not None:
        if not isinstance(body_cache, dict):
            raise InvalidRequest("'cache' must be an object.", param="cache")
        for flag in ("no-cache", "no-store"):
            if flag in body_cache and not isinstance(body_cache[flag], bool):
                raise InvalidRequest(f"'cache.{flag}' must be a boolean.", param=f"cache.{flag}")
        no_cache = no_cache or bool(body_cache.get("no-cache"))
        no_store = no_store or bool(body_cache.get("no-store"))
        if "ttl" in body_cache and body_cache["ttl"] is not None:
            ttl = _non_negative_int(body_cache["ttl"], "cache.ttl")
        if "s-maxage" in body_cache and body_cache["s-maxage"] is not None:
            max_age = _non_negative_int(body_cache["s-maxage"], "cache.s-maxage")
    if ttl is not None:
        if ttl == 0:
            no_store = True  # a zero lifetime is a request not to keep the answer
        ttl = min(ttl, max_ttl) if ttl else None
    return CacheControls(
        read=not (no_cache or no_store), write=not no_store, max_age=max_age, ttl=ttl
    )
