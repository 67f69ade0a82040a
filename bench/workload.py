"""The requests the benchmark sends, and how the cache is filled before hits are measured.

The gateway is warmed through its own API (one miss per body, then it answers hits); the
limit's Redis keys are filled with the bytes the upstream answers for the same bodies, so
both serve the same payload.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from bench.limit_app import chat_key, embedding_key
from bench.wrk import UNIQUE

CHAT_MODEL = "gpt-4o-mini"
EMBED_MODEL = "text-embedding-3-small"
CHAT_PATH = "/v1/chat/completions"
EMBED_PATH = "/v1/embeddings"
RESPONSES_PATH = "/v1/responses"
TOKEN = "bench-key"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def chat_body(question: str, model: str = CHAT_MODEL) -> bytes:
    return orjson.dumps(
        {
            "model": model,
            "messages": [
                {"role": "system", "content": "You are a concise assistant for an online shop."},
                {"role": "user", "content": f"{question} Answer in one short sentence."},
            ],
            "temperature": 0,
            "max_tokens": 64,
        }
    )


def chat_hits(count: int = 64) -> list[bytes]:
    return [chat_body(f"Question {i}: where is my order number {1000 + i}?") for i in range(count)]


def chat_unique_template(model: str = CHAT_MODEL) -> bytes:
    return chat_body(f"Question {UNIQUE}: where is my order?", model)


def responses_body(question: str, stream: bool = False) -> bytes:
    """A Responses API request of the same size and shape as `chat_body`'s."""
    body: dict[str, Any] = {
        "model": CHAT_MODEL,
        "instructions": "You are a concise assistant for an online shop.",
        "input": f"{question} Answer in one short sentence.",
        "temperature": 0,
        "max_output_tokens": 64,
    }
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def responses_hits(count: int = 64) -> list[bytes]:
    return [
        responses_body(f"Question {i}: where is my order number {1000 + i}?") for i in range(count)
    ]


def embedding_body(batch: int, fmt: str, size: int = 64) -> bytes:
    inputs = [f"Product {batch}-{i}: a sturdy blue kettle, 1.7 litres." for i in range(size)]
    return orjson.dumps({"model": EMBED_MODEL, "input": inputs, "encoding_format": fmt})


async def post(
    session: aiohttp.ClientSession, url: str, body: bytes
) -> tuple[int, Mapping[str, str], bytes]:
    async with session.post(url, data=body, headers=AUTH) as response:
        return response.status, response.headers.copy(), await response.read()


async def warm_gateway(gateway: str, path: str, bodies: list[bytes]) -> None:
    """One request per body (a miss that stores), then check the next one is a HIT."""
    async with aiohttp.ClientSession() as session:
        sem = asyncio.Semaphore(8)

        async def one(body: bytes) -> None:
            async with sem:
                status, _, raw = await post(session, gateway + path, body)
                if status != 200:
                    raise RuntimeError(f"warming {path} failed: {status} {raw[:300]!r}")

        await asyncio.gather(*(one(b) for b in bodies))
        _, headers, _ = await post(session, gateway + path, bodies[0])
        if headers.get("X-Cache") != "HIT":
            raise RuntimeError(f"{path} is not answered from the cache after warming: {headers}")


def _client(redis_url: str, cluster: bool) -> Any:
    if cluster:
        return RedisCluster.from_url(redis_url)
    return aioredis.Redis.from_url(redis_url)


async def fill_limit_chat(
    redis_url: str,
    upstream: str,
    bodies: list[bytes],
    path: str = CHAT_PATH,
    cluster: bool = False,
) -> None:
    """The upstream's answer to each body, stored under the limit's key for it (chat and
    completions, and the Responses API with `path`)."""
    redis = _client(redis_url, cluster)
    async with aiohttp.ClientSession() as session:
        for body in bodies:
            status, _, raw = await post(session, upstream + path, body)
            assert status == 200, raw
            await redis.set(chat_key(body), raw)
    await redis.aclose()


async def fill_limit_embeddings(
    redis_url: str, upstream: str, bodies: list[bytes], cluster: bool = False
) -> None:
    """Each input's vector, rendered once in the body's format, under its own key."""
    redis = _client(redis_url, cluster)
    async with aiohttp.ClientSession() as session:
        for body in bodies:
            request: dict[str, Any] = orjson.loads(body)
            status, _, raw = await post(session, upstream + EMBED_PATH, body)
            assert status == 200, raw
            data = orjson.loads(raw)["data"]
            fmt = request["encoding_format"]
            await (redis.mset_nonatomic if cluster else redis.mset)(
                {
                    embedding_key(fmt, item): orjson.dumps(d["embedding"])
                    for item, d in zip(request["input"], data, strict=True)
                }
            )
    await redis.aclose()


async def gateway_has(gateway: str, path: str, body: bytes) -> bool:
    """False when the gateway answers 404 for `path` (the endpoint is not on this branch)."""
    async with aiohttp.ClientSession() as session:
        status, _, _ = await post(session, gateway + path, body)
    return status != 404
