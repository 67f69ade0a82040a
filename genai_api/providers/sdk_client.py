"""The openai SDK client the provider calls through, with its per-path work done once.

For every call, `openai.AsyncOpenAI.post` constructs its request options (a pydantic model
whose defaults are deep-copied), parses and merges the base URL with the path (two URL
parses) and rebuilds its headers (auth, the platform and `X-Stainless-*` headers, retry
count, read timeout) from several dictionaries. For the gateway's three paths and its one
API key all three come out the same on every call, and together they cost about half of
what the SDK adds to a provider call (`bench/profile_miss.py`). `GatewayOpenAI`:

- `post_raw(path, content)`: the SDK's raw call (`post(path, cast_to=httpx.Response,
  content=...)`) made through its public `request`, with options copied from a template
  built once per path;
- `_prepare_url` and `_build_headers`: the hooks the SDK's own Azure client overrides,
  answering a URL per path, and headers per (retry number, API key, per-call headers,
  security options); a call with a timeout or an idempotency key of its own is built by
  the SDK as usual.

Everything else (retries, errors, timeouts, streaming) is the SDK's.

`keyless=True` sends no `Authorization` header at all (a vLLM or TEI server without a key):
the SDK insists on a key, so it gets a placeholder that is never sent.

    client = GatewayOpenAI(api_key="sk-...", base_url="https://api.openai.com/v1")
    response = await client.post_raw("/chat/completions", b'{"model": ...}')
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import httpx
import openai
from openai._models import FinalRequestOptions

_REMEMBERED = 64  # paths, and header variants: plenty for the gateway's three endpoints
_JSON = {"Content-Type": "application/json"}
_UNSENT_KEY = "stainless-python-retry-unsent"
_NO_KEY = "no-key-is-sent"  # what the SDK holds for a keyless upstream; never sent


class GatewayOpenAI(openai.AsyncOpenAI):
    def __init__(self, *, keyless: bool = False, **kwargs: Any) -> None:
        if keyless:
            kwargs["api_key"] = _NO_KEY
        super().__init__(**kwargs)
        self._keyless = keyless
        self._urls: dict[str, httpx.URL] = {}
        self._urls_base = self.base_url
        self._headers: dict[Hashable, httpx.Headers] = {}
        self._options: dict[str, FinalRequestOptions] = {}

    @property
    def user_agent(self) -> str:
        return f"AsyncOpenAI/Python {self._version}"  # the SDK's, not this subclass's name

    async def post_raw(self, path: str, content: bytes, *, stream: bool = False) -> httpx.Response:
        """POST JSON `content` to `path`; the raw response, its body unread when `stream`.
        Status errors, timeouts and connection failures raise the SDK's exceptions."""
        template = self._options.get(path)
        if template is None:
            template = FinalRequestOptions.construct(method="post", url=path, headers=_JSON)
            if len(self._options) < _REMEMBERED:
                self._options[path] = template
        options = template.model_copy(update={"content": content})
        response: httpx.Response = await self.request(httpx.Response, options, stream=stream)
        return response

    @property
    def auth_headers(self) -> dict[str, str]:
        return {} if self._keyless else super().auth_headers

    def _auth_headers(self, security: Any) -> dict[str, str]:
        return {} if self._keyless else super()._auth_headers(security)

    def _validate_headers(self, headers: Any, custom_headers: Any) -> None:
        if not self._keyless:  # the SDK refuses a request without Authorization
            super()._validate_headers(headers, custom_headers)

    def _idempotency_key(self) -> str:
        """The SDK makes a fresh key (a uuid4) for every call, but sends it only in the
        `_idempotency_header` a client sets, which `AsyncOpenAI` does not."""
        if self._idempotency_header is None:
            return _UNSENT_KEY
        return super()._idempotency_key()

    def _prepare_url(self, url: str) -> httpx.URL:
        if self.base_url is not self._urls_base:  # the SDK lets `base_url` be reassigned
            self._urls, self._urls_base = {}, self.base_url
        prepared = self._urls.get(url)
        if prepared is None:
            prepared = super()._prepare_url(url)
            if len(self._urls) < _REMEMBERED:
                self._urls[url] = prepared
        return prepared

    def _build_headers(self, options: Any, *, retries_taken: int = 0) -> httpx.Headers:
        key = self._headers_key(options, retries_taken)
        if key is None:
            return super()._build_headers(options, retries_taken=retries_taken)
        headers = self._headers.get(key)
        if headers is None:
            headers = super()._build_headers(options, retries_taken=retries_taken)
            if len(self._headers) >= _REMEMBERED:
                self._headers.clear()
            self._headers[key] = headers
        # A copy (the SDK and httpx may edit theirs) that keeps the encoding found once.
        return httpx.Headers(headers, encoding=headers.encoding)

    def _headers_key(self, options: Any, retries_taken: int) -> Hashable | None:
        """What the SDK's headers depend on, or None when a call must build its own."""
        if not isinstance(options.timeout, openai.NotGiven):
            return None  # its read timeout goes into a header
        if self._idempotency_header and options.idempotency_key:
            return None
        custom = options.headers if isinstance(options.headers, dict) else {}
        if not all(isinstance(value, str) for value in custom.values()):
            return None  # an `Omit`, say
        security = options.security if isinstance(options.security, dict) else {}
        return (
            retries_taken,
            self.api_key,
            tuple(custom.items()),
            tuple(security.items()),
        )
