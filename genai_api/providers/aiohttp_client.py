"""The HTTP client under the openai SDK in production: its aiohttp client, sending straight.

`openai.DefaultAioHttpClient` is an `httpx.AsyncClient` on an aiohttp transport. The SDK
builds every request itself (URL, auth and SDK headers, timeout, retries), so httpx's client
layer around the transport has nothing left to do for the gateway, yet on each call it runs
an auth flow, a redirect loop, the cookie jar's policy checks and the merging of client
defaults into the request: three quarters of what aiohttp's own send and receive cost
(`bench/profile_miss.py`). `GatewayAioHttpClient` keeps the SDK's client, transport and
behaviour, and does each of those only when there is something to do:

- client defaults (headers, cookies) merged when the SDK's request lacks them, by httpx;
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
        """The SDK's request as it built it, with the client's defaults merged (httpx's way)
        only where it lacks some; anything else (files, params, cookies) goes to httpx."""
        if any(value is not None for value in rest.values()) or self.cookies:
            return super().build_request(
                method,
                url,
                content=content,
                headers=headers,
                timeout=timeout,
                extensions=extensions,
                **rest,
            )
        headers = httpx.Headers(headers)
        for name, value in self.headers.multi_items():
            if name not in headers:
                headers[name] = value
        extensions = dict(extensions or {})
        if "timeout" not in extensions:
            chosen = self.timeout if timeout is _DEFAULT else httpx.Timeout(timeout)
            extensions["timeout"] = chosen.as_dict()
        return httpx.Request(
            method, self._merge_url(url), content=content, headers=headers, extensions=extensions
        )

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
                await response.aread()
        except BaseException:
            await response.aclose()
            raise
        return response
