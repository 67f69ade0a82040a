"""The miss path's floor with the openai SDK: a pass-through proxy whose upstream call is the
gateway's own provider call (`OpenAIProvider.create`: the SDK with its aiohttp client, the
answer parsed with orjson) and nothing else (no key, no cache, no coalescing, no framework).

It shows how much of the gateway's miss cost is the SDK's: `bench.passthrough_proxy` is the
same relay with a bare aiohttp POST.

    python -m bench.sdk_passthrough --port 9301 --upstream http://127.0.0.1:9100
"""

from __future__ import annotations

import argparse

import httpx
import orjson
from starlette.types import Receive, Scope, Send

from bench.serving import lifespan, read_body, send_bytes, serve
from genai_api.providers.aiohttp_client import GatewayAioHttpClient
from genai_api.providers.openai import OpenAIProvider


class SdkPassthrough:
    def __init__(self, upstream: str, http_client: httpx.AsyncClient | None = None) -> None:
        self.upstream = upstream.rstrip("/") + "/v1"
        self.http_client = http_client  # the gateway's aiohttp client unless given (tests)
        self.provider: OpenAIProvider | None = None

    async def _start(self) -> None:
        limits = httpx.Limits(max_connections=128, max_keepalive_connections=64)
        self.provider = OpenAIProvider(
            api_key="sk-bench",
            base_url=self.upstream,
            timeout=30.0,
            max_retries=0,
            http_client=self.http_client or GatewayAioHttpClient(limits=limits),
        )

    async def _stop(self) -> None:
        if self.provider is not None:
            await self.provider.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send, self._start, self._stop)
            return
        assert self.provider is not None
        body = await read_body(receive)
        path = scope["path"].removeprefix("/v1")
        answer = await self.provider.create(path, orjson.loads(body))
        await send_bytes(send, 200, orjson.dumps(answer))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9301)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    serve(SdkPassthrough(args.upstream), args.host, args.port)


if __name__ == "__main__":
    main()
