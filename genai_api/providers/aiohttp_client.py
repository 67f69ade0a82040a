"""The HTTP client under the openai SDK in production: its aiohttp client, sending straight.

`openai.DefaultAioHttpClient` is an `httpx.AsyncClient` on an aiohttp transport. The SDK
builds every request itself (URL, auth and SDK headers, timeout, retries), so httpx's client
layer around the transport has nothing left to do for the gateway, yet on each call it runs
an auth flow, a redirect loop, the cookie jar's policy checks and the merging of client
defaults into the request: three quarters of what aiohttp's own send and receive cost
(`bench/profile_miss.py`). `GatewayAioHttpClient` keeps the SDK's client, transport and
behaviour, and does each of those only when there is something to do:

- client defaults (headers, cookies) merged when the SDK's request lacks them: headers
  from their raw bytes (httpx decodes and re-encodes every header on each merge and look-up),
  cookies by httpx;
- a body not streamed read in one aiohttp `read()` (httpx's `aread` goes through its chunk
  iterators and decoders), and decoded by httpx when the upstream compressed it;
- redirects followed (by httpx) only when the upstream answers one;
- cookies the upstream sets kept in the jar, as httpx does, and sent back;
- an `auth`, event hooks or proxy mounts: httpx's full `send`, unchanged;
- a connection that fails other than by timing out (refused, reset) raised as
  `httpx.ConnectError`, not httpx-aiohttp's `ConnectTimeout` (a 502, not a 504).

    client = GatewayAioHttpClient(limits=httpx.Limits(max_connections=128))
    openai.AsyncOpenAI(http_client=client)
"""

from __future__ import annotations

from typing import Any

import aiohttp
import httpx
import openai
from aiohttp import ClientResponse
from httpx_aiohttp.transport import AiohttpResponseStream, map_aiohttp_exceptions

_DEFAULT = httpx.USE_CLIENT_DEFAULT


class GatewayAioHttpClient(openai.DefaultAioHttpClient):
    def build_request(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        content: Any = None,
        headers: Any = None,
        timeout: Any = _DEFAULT,
        extensions: Any = None,
        **rest: Any,
    ) -> httpx.Request:
        """The request httpx would build for the SDK's: its headers and the client's defaults
        it lacks, merged as raw byte pairs; anything else (files, params, cookies, a body that
        is not `bytes`) goes to httpx."""
        # The SDK's case: a JSON body in bytes and its own `httpx.Headers`.
        fast = isinstance(content, bytes) and bool(content) and isinstance(headers, httpx.Headers)
        if not fast or any(v is not None for v in rest.values()) or self.cookies or self.params:
            return super().build_request(
                method,
                url,
                content=content,
                headers=headers,
                timeout=timeout,
                extensions=extensions,
                **rest,
            )
        url = self._merge_url(url)
        extensions = dict(extensions or {})
        if "timeout" not in extensions:
            chosen = self.timeout if timeout is _DEFAULT else httpx.Timeout(timeout)
            extensions["timeout"] = chosen.as_dict()
        request = httpx.Request(
            method,
            url,
            headers=_with_defaults(headers, self.headers, url, len(content)),
            stream=httpx.ByteStream(content),
            extensions=extensions,
        )
        request.read()  # `content` as a body already read, as `Request(content=...)` leaves it
        if headers.encoding == self.headers.encoding == "ascii":
            request.headers.encoding = "ascii"  # else httpx tries each header on each lookup
        return request

    async def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: Any = _DEFAULT,
        follow_redirects: Any = _DEFAULT,
    ) -> httpx.Response:
        """The transport's answer to `request`, read unless `stream`; httpx's own `send` when
        an auth flow, a hook or a proxy is configured, or the answer is a redirect to follow."""
        try:
            return await self._send(request, stream, auth, follow_redirects)
        except httpx.ConnectTimeout as exc:
            # httpx-aiohttp maps every aiohttp connection error (refused, reset, closed by
            # the server) to ConnectTimeout; only a timeout is one.
            if isinstance(exc.__cause__, aiohttp.ServerTimeoutError | TimeoutError):
                raise
            raise httpx.ConnectError(str(exc), request=request) from exc.__cause__

    async def _send(
        self, request: httpx.Request, stream: bool, auth: Any, follow_redirects: Any
    ) -> httpx.Response:
        plain = (
            auth in (_DEFAULT, None)
            and self.auth is None
            and not self._mounts
            and not any(self.event_hooks.values())
        )
        if not plain:
            return await super().send(
                request, stream=stream, auth=auth, follow_redirects=follow_redirects
            )
        response = await self._transport.handle_async_request(request)
        try:
            follow = self.follow_redirects if follow_redirects is _DEFAULT else follow_redirects
            if follow and response.has_redirect_location:
                await response.aclose()
                redirected = self._build_redirect_request(request, response)
                return await super().send(redirected, stream=stream, follow_redirects=True)
            if "set-cookie" in response.headers:
                self.cookies.extract_cookies(response)
            if not stream:
                await _read(response)
        except BaseException:
            await response.aclose()
            raise
        return response


def _with_defaults(
    headers: httpx.Headers, defaults: httpx.Headers, url: httpx.URL, length: int
) -> list[tuple[bytes, bytes]]:
    """The headers httpx would send for a `bytes` body: the client's defaults the request
    lacks, then the request's, with `Host` first and `Content-Length` last when missing;
    built from raw byte pairs, without httpx's repeated decoding and re-encoding."""
    raw = headers.raw
    present = {name.lower() for name, _ in raw}
    merged = [(name, value) for name, value in defaults.raw if name.lower() not in present]
    if b"host" not in present and url.host:
        merged.insert(0, (b"Host", url.netloc))
    merged += raw
    if b"content-length" not in present:
        merged.append((b"Content-Length", str(length).encode()))
    return merged


async def _read(response: httpx.Response) -> None:
    """Read `response`'s body whole, as `aread` would: from aiohttp in one `read()` rather than
    through httpx's chunk iterators and decoders. A compressed body (the transport leaves
    decompression to httpx) is decoded by httpx's own `aread`, from the bytes read."""
    stream = response.stream
    answer = getattr(stream, "_aiohttp_response", None)
    if not isinstance(stream, AiohttpResponseStream) or not isinstance(answer, ClientResponse):
        await response.aread()  # not httpx-aiohttp's stream as we know it: httpx's own way
        return
    with map_aiohttp_exceptions():
        body = await answer.read()
    await stream.aclose()  # releases the connection
    response.stream = httpx.ByteStream(body)
    if "content-encoding" in response.headers:
        await response.aread()
    else:  # what `aread` leaves: the content, its size, the stream consumed and closed
        response._content = body
        response._num_bytes_downloaded = len(body)
        response.is_stream_consumed = response.is_closed = True
