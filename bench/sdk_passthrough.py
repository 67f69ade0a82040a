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
from starlette.types import Receive, Scope, Send

from bench.serving import lifespan, read_body, send_bytes, serve
from bench.upstream_calls import SdkCall


class SdkPassthrough:
    def __init__(self, upstream: str, http_client: httpx.AsyncClient | None = None) -> None:
        self.call = SdkCall(upstream, http_client)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send, self.call.start, self.call.stop)
            return
        status, payload = await self.call(scope["path"], await read_body(receive))
        await send_bytes(send, status, payload)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9301)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    serve(SdkPassthrough(args.upstream), args.host, args.port)


if __name__ == "__main__":
    main()
