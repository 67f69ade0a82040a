"""Scenario 4: a burst of identical cold misses against a slow upstream.

50 clients send the same never-seen request at once (spread over the given gateways); the
upstream's call counter says how many provider calls they caused, and each client's own
latency says whether waiting on a peer's flight cost more than the flight itself. While the
burst is in the air, Redis is polled for lock keys, so a missing cross-process feature can
be told apart from a broken one.

The burst goes out on 50 kept-alive raw HTTP/1.1 connections, its bytes built beforehand and
written in one synchronous loop, each client's clock started as its request is written. An
aiohttp client spends ~150 µs of the load core per request before its bytes leave (and writes
the bodies from a second task), so its burst took 7-15 ms to go out and the first clients'
latencies counted the load generator's time preparing the other 49.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

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


class Client:
    """One kept-alive HTTP/1.1 connection: write a prepared request, read its answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> Client:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return cls(reader, writer)

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body

    def close(self) -> None:
        self.writer.close()


def request(url: str, body: bytes) -> bytes:
    """The raw bytes of a POST of `body` to the gateway at `url`."""
    parts = urlsplit(url)
    head = [f"POST {CHAT_PATH} HTTP/1.1", f"Host: {parts.netloc}"]
    head += [f"{name}: {value}" for name, value in AUTH.items()]
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def burst(
    gateways: list[str], upstream: str, redis_url: str, namespace: str, clients: int = 50
) -> Burst:
    body = chat_body(f"Coalescing probe {uuid.uuid4().hex}: is the parcel insured?")
    redis = aioredis.Redis.from_url(redis_url)
    urls = [gateways[i % len(gateways)] for i in range(clients)]
    conns = [await Client.open(url) for url in urls]
    async with aiohttp.ClientSession() as session:

        async def warm(i: int) -> None:
            conns[i].writer.write(request(urls[i], chat_body(f"Warm-up {i} {uuid.uuid4().hex}")))
            await conns[i].response()

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

        async def one(i: int, start: float) -> tuple[float, int, str]:
            status, headers, _ = await conns[i].response()
            return (time.perf_counter() - start) * 1000, status, headers.get("x-cache", "-")

        raws = [request(url, body) for url in urls]
        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0)
        waiting = []
        for i, raw in enumerate(raws):
            start = time.perf_counter()
            conns[i].writer.write(raw)
            waiting.append(one(i, start))
        results = await asyncio.gather(*waiting, return_exceptions=True)
        done.set()
        await watcher
        calls = await _calls(session, upstream)
    for conn in conns:
        conn.close()
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
