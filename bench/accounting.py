"""What savings accounting costs a request: `record()` per answer, and a flush to Redis.

    python -m bench.accounting                    # record() only (memory)
    python -m bench.accounting redis://127.0.0.1:6379/0   # plus flushes to that Redis

`record()` runs on every answer (hits included) and must stay a few microseconds: it only
adds integers to an in-memory batch. A flush (every 0.5 s per process) is one Lua script.
"""

from __future__ import annotations

import asyncio
import sys
import time
import timeit
import uuid

from genai_api.models.table import ModelTable
from genai_api.savings.accounting import Accounting, CacheStatus


def bench_record(n: int = 200_000) -> float:
    """Microseconds per `record()` of a hit, the cost computation included."""
    accounting = Accounting()
    model = ModelTable.load(None).get("gpt-4o-mini")

    def hit() -> None:
        cost = model.cost(1200, 345)
        accounting.record(
            model.name, CacheStatus.HIT, prompt_tokens=1200, completion_tokens=345, cost=cost
        )

    return min(timeit.repeat(hit, number=n, repeat=5)) / n * 1e6


async def bench_flush(url: str, flushes: int = 200) -> float:
    """Milliseconds per flush of a typical batch (3 models, one minute) to Redis."""
    import redis.asyncio as aioredis

    from genai_api.savings.redis import RedisStats

    client = aioredis.from_url(url)
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    accounting = Accounting(RedisStats(client, namespace))
    try:
        start = time.perf_counter()
        for _ in range(flushes):
            for model in ("gpt-4o-mini", "gpt-4o", "gpt-5"):
                accounting.record(model, CacheStatus.HIT, prompt_tokens=10, completion_tokens=5)
                accounting.record(model, CacheStatus.MISS)
            await accounting.flush()
        elapsed = time.perf_counter() - start
        async for key in client.scan_iter(match=f"{namespace}:*"):
            await client.unlink(key)
    finally:
        await client.aclose()
    return elapsed / flushes * 1e3


def main() -> None:
    print(f"record() of a hit: {bench_record():.2f} us")
    if len(sys.argv) > 1:
        print(f"flush to Redis:    {asyncio.run(bench_flush(sys.argv[1])):.3f} ms")


if __name__ == "__main__":
    main()
