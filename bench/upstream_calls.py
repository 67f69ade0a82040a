"""The two ways the reference servers call the upstream, shared so they compare like with like.

`AiohttpCall` is a bare pooled aiohttp POST (the pass-through proxy's, the floor of any
relay); `SdkCall` is the gateway's own provider call (`OpenAIProvider.create`: the openai
SDK with its aiohttp client, the answer parsed and serialised with orjson). Each is started
and stopped by its server's lifespan and called with the request's path and body bytes.
"""

from __future__ import annotations

import aiohttp
import httpx
import orjson

from genai_api.providers.aiohttp_client import GatewayAioHttpClient
from genai_api.providers.openai import OpenAIProvider

_HEADERS = {"content-type": "application/json", "authorization": "Bearer bench"}


class AiohttpCall:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=128))

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def __call__(self, path: str, body: bytes) -> tuple[int, bytes]:
        """(status, body) of POSTing `body` to the upstream's `path` (`/v1/...`)."""
        assert self.session is not None
        async with self.session.post(self.upstream + path, data=body, headers=_HEADERS) as answer:
            return answer.status, await answer.read()


class SdkCall:
    def __init__(self, upstream: str, http_client: httpx.AsyncClient | None = None) -> None:
        self.upstream = upstream.rstrip("/") + "/v1"
        self.http_client = http_client  # the gateway's aiohttp client unless given (tests)
        self.provider: OpenAIProvider | None = None

    async def start(self) -> None:
        limits = httpx.Limits(max_connections=128, max_keepalive_connections=64)
        self.provider = OpenAIProvider(
            api_key="sk-bench",
            base_url=self.upstream,
            timeout=30.0,
            max_retries=0,
            http_client=self.http_client or GatewayAioHttpClient(limits=limits),
        )

    async def stop(self) -> None:
        if self.provider is not None:
            await self.provider.aclose()

    async def __call__(self, path: str, body: bytes) -> tuple[int, bytes]:
        """(200, body) of the provider call for `path` (`/v1/...`); a provider error raises."""
        assert self.provider is not None
        answer = await self.provider.create(path.removeprefix("/v1"), orjson.loads(body))
        return 200, orjson.dumps(answer)
