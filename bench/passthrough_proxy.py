"""A bare pass-through proxy: raw ASGI on uvicorn, one pooled aiohttp session upstream.

The miss-path reference: what relaying a request to the provider costs with nothing else
in the way (no key, no cache, no coalescing). The gateway's miss path is measured against it.

    python -m bench.passthrough_proxy --port 9300 --upstream http://127.0.0.1:9100
"""

from __future__ import annotations

import argparse

from starlette.types import Receive, Scope, Send

from bench.serving import lifespan, read_body, send_bytes, serve
from bench.upstream_calls import AiohttpCall


class PassthroughProxy:
    def __init__(self, upstream: str) -> None:
        self.call = AiohttpCall(upstream)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send, self.call.start, self.call.stop)
            return
        status, payload = await self.call(scope["path"], await read_body(receive))
        await send_bytes(send, status, payload)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9300)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    serve(PassthroughProxy(args.upstream), args.host, args.port)


if __name__ == "__main__":
    main()
