"""The "limit": the least a cache hit can cost on this stack, as a bare raw-ASGI endpoint.

Reads the body, SHA-256es it, does one Redis GET and returns the stored bytes (chat,
completions and responses); for embeddings it parses the body, hashes each input, does one
MGET and splices the stored per-input vector text into the answer. No framework, no validation,
no metadata: what the gateway is measured against, on the same uvicorn (uvloop + httptools).

    python -m bench.limit_app --port 9200 --redis redis://127.0.0.1:6379/0
    python -m bench.limit_app --port 9200 --redis redis://127.0.0.1:7000/0 --cluster

With `--cluster` it uses redis-py's `RedisCluster` (the URL is any node): one GET for chat,
and for embeddings `mget_nonatomic`, one MGET per slot pipelined per node, nodes in parallel.

Keys (filled by the benchmark before it measures): `limit:chat:{sha256(body)}` holds the
response bytes; `limit:emb:{format}:{sha256(orjson(input))}` holds one rendered vector.
"""

from __future__ import annotations

import argparse
import hashlib
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from starlette.types import Receive, Scope, Send

from bench.serving import lifespan, read_body, send_bytes, serve


def chat_key(body: bytes) -> str:
    return "limit:chat:" + hashlib.sha256(body).hexdigest()


def embedding_key(fmt: str, item: Any) -> str:
    return f"limit:emb:{fmt}:" + hashlib.sha256(orjson.dumps(item)).hexdigest()


class LimitApp:
    def __init__(self, redis_url: str, cluster: bool = False) -> None:
        self.redis_url = redis_url
        self.cluster = cluster
        self.redis: Any = None  # aioredis.Redis, or RedisCluster

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send, self._start, self._stop)
            return
        assert self.redis is not None
        body = await read_body(receive)
        if scope["path"].endswith("/embeddings"):
            payload = await self._embeddings(body)
        else:
            payload = await self.redis.get(chat_key(body))
        if payload is None:
            await _send(send, 404, b'{"error":{"message":"not stored"}}')
        else:
            await _send(send, 200, payload)

    async def _start(self) -> None:
        if self.cluster:
            self.redis = RedisCluster.from_url(self.redis_url, max_connections=256)
        else:
            self.redis = aioredis.Redis.from_url(self.redis_url, max_connections=256)

    async def _stop(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()

    async def _embeddings(self, body: bytes) -> bytes | None:
        assert self.redis is not None
        request = orjson.loads(body)
        fmt = request.get("encoding_format") or "float"
        inputs = request["input"]
        keys = [embedding_key(fmt, item) for item in inputs]
        if self.cluster:
            vectors = await self.redis.mget_nonatomic(keys)
        else:
            vectors = await self.redis.mget(keys)
        if any(v is None for v in vectors):
            return None
        parts = [
            b'{"object":"embedding","index":%d,"embedding":%s}' % (i, v)
            for i, v in enumerate(vectors)
        ]
        model = orjson.dumps(request.get("model"))
        tokens = len(inputs)
        tail = b'],"model":%s,"usage":{"prompt_tokens":%d,"total_tokens":%d}}' % (
            model,
            tokens,
            tokens,
        )
        return b'{"object":"list","data":[' + b",".join(parts) + tail


async def _send(send: Send, status: int, body: bytes) -> None:
    await send_bytes(send, status, body, (b"x-cache", b"HIT"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--cluster", action="store_true", help="the URL is a cluster node")
    args = parser.parse_args()
    serve(LimitApp(args.redis, cluster=args.cluster), args.host, args.port)


if __name__ == "__main__":
    main()
