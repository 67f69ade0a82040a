"""The default upstream (`OPENAI_BASE_URL`) as the pass-through reaches it.

Built on the openai SDK's client: its base URL (with the SDK's own default,
`https://api.openai.com/v1`), its headers (the key, `OpenAI-Organization`/`OpenAI-Project`
from `OPENAI_ORG_ID`/`OPENAI_PROJECT_ID`, `User-Agent`, `X-Stainless-*`) and its HTTP client
(`openai.DefaultAsyncHttpxClient`), so a relayed call looks upstream exactly like the SDK's.
The exchange itself is the HTTP client's `send(..., stream=True)` rather than the SDK's
`request`, because the SDK cannot relay: it builds multipart bodies itself (a pre-encoded
one, boundary included, raises `TypeError: Passing both content and files`), it reads an
error answer whole before raising, and it reports any failure of a streamed request body
(a client hanging up, a body over the limit) as a connection error. Here bodies go both
ways as they arrive, and nothing is retried (a streamed body cannot be sent twice).

    upstream = Upstream(api_key="sk-...", base_url=None, timeout=120, max_connections=64)
    response = await upstream.send("GET", ("files", "file-abc", "content"), b"", {}, None)
    async for chunk in response.aiter_raw(): ...
    await response.aclose()
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx
import openai
import orjson

from genai_api.errors import ProviderError, ProviderTimeout, ProviderUnreachable
from genai_api.settings import Settings

Content = bytes | AsyncIterator[bytes] | None
# RFC 3986 `pchar`: what a path segment may hold unescaped (`ft:...` model ids keep their ':').
_SEGMENT_SAFE = "!$&'()*+,;=:@-._~"


class ClientBody:
    """The client's body as it arrives, remembering why it stopped if it failed (the client
    hung up, the body passed its limit, an id in a form field was refused), so that failure
    is answered as itself and not taken for the upstream's."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self.failure: Exception | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._chunks:
                yield chunk
        except Exception as exc:
            self.failure = exc
            raise


@functools.cache
def _tls() -> ssl.SSLContext:
    """The client's default TLS context (the CA bundle, or SSL_CERT_FILE / SSL_CERT_DIR),
    built once per process: reading the bundle is ~18 ms of CPU, paid by every app built
    otherwise (a server builds one, the test suite about a thousand)."""
    return httpx.create_ssl_context()


class Upstream:
    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None,
        timeout: float,
        max_connections: int,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._http = http_client or openai.DefaultAsyncHttpxClient(
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,  # a redirect goes back to the client, as the upstream sent it
            verify=_tls(),
        )
        self.sdk = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=0,
            http_client=self._http,
        )
        self._headers: dict[str, str] | None = None

    def _sdk_headers(self) -> dict[str, str]:
        """The SDK's headers for every call (read once, inside the event loop, where the
        SDK's `X-Stainless-Async` names it), without its JSON `Content-Type`/`Accept`."""
        if self._headers is None:
            headers = {**self.sdk.default_headers, **self.sdk.auth_headers}
            self._headers = {
                name: value
                for name, value in headers.items()
                if isinstance(value, str) and name.lower() not in ("content-type", "accept")
            }
        return self._headers

    def url(self, segments: tuple[str, ...], query: bytes) -> httpx.URL:
        """The upstream URL of `/v1/{segments}?{query}`: the SDK's base URL joined with the
        path, each segment escaped again (as the gateway read it, so the upstream gets the
        path the tenancy rule judged)."""
        base = self.sdk.base_url
        path = "/".join(quote(segment, safe=_SEGMENT_SAFE) for segment in segments)
        raw = base.raw_path + path.encode("ascii")
        if query:
            raw += b"?" + query
        return base.copy_with(raw_path=raw)

    async def send(
        self,
        method: str,
        segments: tuple[str, ...],
        query: bytes,
        headers: Mapping[str, str],
        content: Content,
    ) -> httpx.Response:
        """The upstream's answer, its body not read yet (close it: `aclose`). Any status is
        an answer; only a failure to get one raises: 504 on a timeout, 502 otherwise, or the
        client body's own failure."""
        body = (
            ClientBody(content) if content is not None and not isinstance(content, bytes) else None
        )
        request = self._http.build_request(
            method,
            self.url(segments, query),
            headers={**self._sdk_headers(), **headers},
            content=body if body is not None else content,
        )
        try:
            return await self._http.send(request, stream=True)
        except Exception as exc:
            if body is not None and body.failure is not None:
                raise body.failure from None
            if isinstance(exc, httpx.TimeoutException):
                raise ProviderTimeout() from exc
            if isinstance(exc, httpx.HTTPError):
                raise ProviderUnreachable() from exc
            raise

    async def json(
        self, segments: tuple[str, ...], query: bytes, headers: Mapping[str, str]
    ) -> dict[str, Any]:
        """`GET` a JSON object (a list page) with the client's `headers` (`to_upstream`'s);
        an error answer raises with its status and body, as the provider's errors do on the
        cached routes."""
        response = await self.send("GET", segments, query, headers, None)
        try:
            raw = await response.aread()
        except httpx.TimeoutException as exc:
            raise ProviderTimeout() from exc
        except httpx.HTTPError as exc:
            raise ProviderUnreachable(f"The upstream answer was cut: {exc}") from exc
        finally:
            await response.aclose()
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        if response.is_success and isinstance(data, dict):
            return data
        error = data.get("error") if isinstance(data, dict) else None
        raise ProviderError(
            "The upstream provider answered with an error."
            if not response.is_success
            else "The upstream provider answered with invalid JSON.",
            status_code=response.status_code if not response.is_success else 502,
            body=error if isinstance(error, dict) else None,
            headers={"Retry-After": response.headers["retry-after"]}
            if "retry-after" in response.headers
            else None,
        )

    async def aclose(self) -> None:
        await self.sdk.close()


def build_upstream(settings: Settings) -> Upstream | None:
    """The pass-through's upstream: `OPENAI_BASE_URL` with `OPENAI_API_KEY` (the SDK's
    default URL when unset); none with the offline mock provider."""
    if settings.resolved_provider == "mock":
        return None
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unset"
    return Upstream(
        api_key=key,
        base_url=settings.openai_base_url,
        timeout=settings.upstream_timeout,
        max_connections=settings.upstream_concurrency,
    )
