"""The "miss limit": the least a cache miss that coalesces across processes can cost here.

A bare raw-ASGI endpoint that does what any such miss must, and nothing more: SHA-256 of
the body; one Redis round trip that reads the entry and, when there is none, takes the
key's lease (`SET NX PX`) in the same script; the provider call; one Redis round trip that
stores the answer and releases the lease. No framework, no validation, no metadata, no
accounting, no L1, no waiting room worth the name (a request that finds the lease taken
polls every 5 ms: the bench's misses are all distinct). It is to scenario 3 what
`bench.limit_app` is to scenarios 1 and 2: the floor the gateway is measured against.

The provider call is a bare aiohttp POST (`--provider aiohttp`, as `bench.passthrough_proxy`
makes it) or the gateway's own (`--provider sdk`: the openai SDK with its aiohttp client, as
`bench.sdk_passthrough` makes it), so the run shows what the cache's own Redis work costs
over each pass-through, and what the SDK adds on top of it.

    python -m bench.miss_limit --port 9302 --upstream http://127.0.0.1:9100 \
        --redis redis://127.0.0.1:6379/0 [--provider sdk]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
from typing import Any, Literal

import redis.asyncio as aioredis
from starlette.types import Receive, Scope, Send

from bench.serving import lifespan, read_body, send_bytes, serve
from bench.upstream_calls import AiohttpCall, SdkCall

LEASE_MS = 30_000
TTL_MS = 3_600_000
# KEYS: entry, lease. ARGV: token, lease ms. The stored bytes, 1 (the lease is ours) or 0.
_CLAIM = """
local stored = redis.call('get', KEYS[1])
if stored then return stored end
if redis.call('set', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""
# KEYS: entry, lease. ARGV: value ('' for none: a failed call stores nothing), ttl ms, token.
_FILL = """
if ARGV[1] ~= '' then redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
if redis.call('get', KEYS[2]) == ARGV[3] then redis.call('del', KEYS[2]) end
return 1
"""

Provider = Literal["aiohttp", "sdk"]


class MissLimit:
    def __init__(
        self,
        upstream: str,
        redis_url: str,
        *,
        provider: Provider = "aiohttp",
        namespace: str = "miss-limit",
    ) -> None:
        self.call = SdkCall(upstream) if provider == "sdk" else AiohttpCall(upstream)
        self.redis_url = redis_url
        self.namespace = namespace
        self.redis: aioredis.Redis | None = None
        self._tokens = itertools.count()

    async def _start(self) -> None:
        self.redis = aioredis.Redis.from_url(self.redis_url, max_connections=256)
        self._claim = self.redis.register_script(_CLAIM)
        self._fill = self.redis.register_script(_FILL)
        await self.call.start()

    async def _stop(self) -> None:
        await self.call.stop()
        if self.redis is not None:
            await self.redis.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send, self._start, self._stop)
            return
        body = await read_body(receive)
        digest = hashlib.sha256(body).hexdigest()
        keys = [f"{self.namespace}:e:{digest}", f"{self.namespace}:lock:{digest}"]
        token = str(next(self._tokens))
        while True:
            claimed: Any = await self._claim(keys=keys, args=[token, LEASE_MS])
            if isinstance(claimed, bytes):
                await send_bytes(send, 200, claimed, (b"x-cache", b"HIT"))
                return
            if claimed == 1:
                break
            await asyncio.sleep(0.005)
        stored = b""
        try:
            status, payload = await self.call(scope["path"], body)
            if status == 200:
                stored = payload
        finally:
            await self._fill(keys=keys, args=[stored, TTL_MS, token])
        await send_bytes(send, status, payload, (b"x-cache", b"MISS"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9302)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--provider", choices=("aiohttp", "sdk"), default="aiohttp")
    args = parser.parse_args()
    serve(MissLimit(args.upstream, args.redis, provider=args.provider), args.host, args.port)


if __name__ == "__main__":
    main()
