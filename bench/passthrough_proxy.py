"""A bare pass-through proxy: raw ASGI on uvicorn, one pooled aiohttp session upstream.

The miss-path reference: what relaying a request to the provider costs with nothing else
in the way (no key, no cache, no coalescing). The gateway's miss path is measured against it.

    python -m bench.passthrough_proxy --port 9300 --upstream http://127.0.0.1:9100
"""

from __future__ import annotations

import argparse

import aiohttp
from starlette.types import Receive, Scope, Send

from bench.serving import lifespan, read_body, serve


class PassthroughProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    async def _start(self) -> None:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=128))

    async def _stop(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send, self._start, self._stop)
            return
        assert self.session is not None
        body = await read_body(receive)
        async with self.session.post(
            self.upstream + scope["path"],
            data=body,
            headers={"content-type": "application/json", "authorization": "Bearer bench"},
        ) as upstream:
            payload = await upstream.read()
            status = upstream.status
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9300)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    serve(PassthroughProxy(args.upstream), args.host, args.port)


if __name__ == "__main__":
    main()
