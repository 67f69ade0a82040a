"""Scenario 4: a burst of identical cold misses against a slow upstream.

50 clients send the same never-seen request at once (spread over the given gateways); the
upstream's call counter says how many provider calls they caused, and each client's own
latency says whether waiting on a peer's flight cost more than the flight itself. While the
burst is in the air, Redis is polled for lock keys, so a missing cross-process feature can
be told apart from a broken one.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from bench.workload import AUTH, CHAT_PATH, chat_body


@dataclass
class Burst:
    clients: int
    gateways: int
    upstream_calls: int
    latencies_ms: list[float]
    statuses: dict[str, int]
    cache: dict[str, int]
    lock_keys_seen: int
    errors: list[str] = field(default_factory=list)

    @property
    def max_ms(self) -> float:
        return max(self.latencies_ms) if self.latencies_ms else float("inf")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "max_ms": self.max_ms}


async def _calls(session: aiohttp.ClientSession, upstream: str) -> int:
    async with session.get(upstream + "/calls") as response:
        return int((await response.json())["total"])


async def burst(
    gateways: list[str], upstream: str, redis_url: str, namespace: str, clients: int = 50
) -> Burst:
    body = chat_body(f"Coalescing probe {uuid.uuid4().hex}: is the parcel insured?")
    redis = aioredis.Redis.from_url(redis_url)
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def warm(i: int) -> None:
            url = gateways[i % len(gateways)] + CHAT_PATH
            once = chat_body(f"Warm-up {i} {uuid.uuid4().hex}")
            async with session.post(url, data=once, headers=AUTH) as response:
                await response.read()

        # The cache is cold for the burst, the processes are not: a first burst of distinct
        # requests opens the client connections and fills the gateways' Redis and upstream
        # pools, as a running server's would be.
        await asyncio.gather(*(warm(i) for i in range(clients)))
        async with session.post(upstream + "/reset"):
            pass
        locks: set[bytes] = set()
        done = asyncio.Event()

        async def watch() -> None:
            while not done.is_set():
                async for key in redis.scan_iter(match=f"{namespace}:lock:*", count=1000):
                    locks.add(key)
                await asyncio.sleep(0.01)

        async def one(i: int) -> tuple[float, int, str]:
            start = time.perf_counter()
            url = gateways[i % len(gateways)] + CHAT_PATH
            async with session.post(url, data=body, headers=AUTH) as response:
                await response.read()
                return (
                    (time.perf_counter() - start) * 1000,
                    response.status,
                    response.headers.get("X-Cache", "-"),
                )

        watcher = asyncio.create_task(watch())
        results = await asyncio.gather(*(one(i) for i in range(clients)), return_exceptions=True)
        done.set()
        await watcher
        calls = await _calls(session, upstream)
    await redis.aclose()
    latencies, statuses, cache, errors = [], {}, {}, []
    for r in results:
        if isinstance(r, BaseException):
            errors.append(repr(r))
            continue
        ms, status, hit = r
        latencies.append(ms)
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        cache[hit] = cache.get(hit, 0) + 1
    return Burst(clients, len(gateways), calls, latencies, statuses, cache, len(locks), errors)
