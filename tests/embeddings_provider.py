"""Test plumbing for embeddings: a respx provider that answers like OpenAI and records which
inputs reached it, the vectors and token counts it answers with, and request helpers."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import json
from decimal import Decimal
from typing import Any

import httpx
import numpy as np
import tiktoken

from genai_api.savings.tokenizer import configure_offline_tiktoken

MODEL = "text-embedding-3-small"  # cl100k_base, $0.02 per 1M tokens
PRICE = Decimal("0.02") / 1_000_000
configure_offline_tiktoken()
CL100K = tiktoken.get_encoding("cl100k_base")
Item = str | list[int]


def vector(item: Item, dims: int = 8) -> np.ndarray:
    """The provider's (deterministic, float32) vector for one input."""
    return np.frombuffer(_vector(json.dumps(item), dims), "<f4")


@functools.cache
def _vector(item: str, dims: int) -> bytes:
    digest = hashlib.sha512(item.encode()).digest()
    if dims <= 16:
        return (np.frombuffer(digest, "<u4")[:dims] / 2**32 - 0.5).astype("<f4").tobytes()
    seed = int.from_bytes(digest[:8], "little")
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(dims) / np.sqrt(dims)).astype("<f4").tobytes()


def tokens_of(item: Item) -> int:
    """What OpenAI bills for one input: its cl100k_base tokens."""
    return len(item) if isinstance(item, list) else len(CL100K.encode_ordinary(item))


def total(items: list[Item]) -> int:
    return sum(tokens_of(i) for i in items)


class Provider:
    """A respx side effect answering embeddings like OpenAI, recording every call's inputs."""

    def __init__(self, dims: int = 8, floats: bool = False) -> None:
        self.dims = dims
        self.floats = floats  # answer JSON floats whatever was asked (some compatible servers)
        self.calls: list[list[Item]] = []
        self.bodies: list[dict[str, Any]] = []
        self.gate: asyncio.Event | None = None
        self.arrived = asyncio.Semaphore(0)  # released once per call that reached us

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        inputs = body["input"]
        items: list[Item] = inputs if isinstance(inputs[0], str | list) else [inputs]
        self.calls.append(items)
        self.arrived.release()
        if self.gate is not None:
            await self.gate.wait()
        as_b64 = body.get("encoding_format") == "base64" and not self.floats
        data = []
        for i, item in enumerate(items):
            vec = vector(item, self.dims)
            embedding = base64.b64encode(vec.tobytes()).decode() if as_b64 else vec.tolist()
            data.append({"object": "embedding", "index": i, "embedding": embedding})
        data.reverse()  # order by `index`, not by position
        used = total(items)
        return httpx.Response(
            200,
            json={
                "object": "list",
                "data": data,
                "model": MODEL,
                "usage": {"prompt_tokens": used, "total_tokens": used},
            },
        )

    @property
    def sent(self) -> list[Item]:
        return [item for call in self.calls for item in call]


async def embed(gw: Any, items: Any, **extra: Any) -> httpx.Response:
    # The same bearer as the SDK client: tenant scope keys entries per client key.
    headers = {"Authorization": "Bearer client-key", **extra.pop("headers", {})}
    answer = await gw.http.post(
        "/v1/embeddings", json={"model": MODEL, "input": items, **extra}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    return answer  # type: ignore[no-any-return]


def vectors(answer: httpx.Response) -> list[np.ndarray]:
    data = answer.json()["data"]
    assert [d["index"] for d in data] == list(range(len(data)))
    assert all(d["object"] == "embedding" for d in data)
    out = []
    for d in data:
        e = d["embedding"]
        raw = base64.b64decode(e) if isinstance(e, str) else np.asarray(e, "<f4").tobytes()
        out.append(np.frombuffer(raw, "<f4"))
    return out


def assert_vectors(answer: httpx.Response, items: list[Item], dims: int = 8) -> None:
    got = vectors(answer)
    assert len(got) == len(items)
    for vec, item in zip(got, items, strict=True):
        assert np.array_equal(vec, vector(item, dims)), item


async def stored(gw: Any) -> list[str]:
    store = gw.gateway.store
    if store.name == "memory":
        return list(store._cache._cache)
    ns = gw.gateway.settings.cache_namespace
    return [k async for k in store.client.scan_iter(match=f"{ns}:*") if b":stats:" not in k]
