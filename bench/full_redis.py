"""The SRE drill's `noeviction` finding, small: hit ratio and provider calls while Redis is full.

One gateway in-process (httpx ASGI, respx provider) on a throwaway `redis-server`, default
settings (breaker: 3 failures, 1 s cool-down). 300 answers are stored, then Redis is made full
(`CONFIG SET maxmemory 1`, `noeviction`: every write refused, every read served) and 3,000
requests follow from 2 clients (or the first argument), each one request at a time: 30 % of
them repeat a stored request (a hit, if it is read), the rest are new (a refused write each).
Prints the hit ratio, provider calls, non-200 answers and the WARNING lines `serve`'s handler
would write while full. Few clients per worker is where a breaker that counts refused writes
opens: with many, the hits in flight between two failures keep resetting its streak.

    .venv/bin/python -m bench.full_redis [clients]
    PYTHONPATH=/path/to/other/checkout .venv/bin/python bench/full_redis.py   # compare
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import redis
import respx

import genai_api
import genai_api.logs
from tests.conftest import CHAT, UPSTREAM, chat_response, make_settings, running
from tests.redis_server import RedisServer

STORED, REQUESTS, REPEATS = 300, 3_000, 0.30


def chat(content: str) -> dict[str, Any]:
    return {**CHAT, "messages": [{"role": "user", "content": content}]}


class Count(logging.Handler):
    """WARNING lines as `serve`'s handler would write them (its repeat limit, if it has one)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.warnings = 0
        limit = getattr(genai_api.logs, "RepeatLimit", None)
        if limit is not None:
            self.addFilter(limit())

    def emit(self, record: logging.LogRecord) -> None:
        self.warnings += 1


async def drill(server: RedisServer, clients: int) -> None:
    rng = random.Random(7)
    with respx.mock(base_url=UPSTREAM, assert_all_called=False) as router:
        provider = router.post("/chat/completions").mock(
            side_effect=lambda request: httpx.Response(200, json=chat_response())
        )
        settings = make_settings(cache_backend="redis", redis_url=server.url)
        async with running(settings) as gw:
            for i in range(STORED):
                await gw.http.post("/v1/chat/completions", json=chat(f"stored {i}"))
            before = provider.call_count
            bodies = [
                chat(f"stored {rng.randrange(STORED)}")
                if rng.random() < REPEATS
                else chat(f"new {i}")
                for i in range(REQUESTS)
            ]
            counter = Count()
            logging.getLogger("genai_api").addHandler(counter)
            admin = redis.Redis(port=server.port)
            admin.config_set("maxmemory", "1")
            try:
                caches: list[str] = []
                statuses: list[int] = []
                queue = iter(bodies)

                async def client() -> None:  # a closed loop: one request at a time
                    for body in queue:
                        answer = await gw.http.post("/v1/chat/completions", json=body)
                        caches.append(answer.headers.get("x-cache", "-"))
                        statuses.append(answer.status_code)

                await asyncio.gather(*(client() for _ in range(clients)))
                ready = (await gw.http.get("/readyz")).json()
            finally:
                admin.config_set("maxmemory", "0")
                admin.close()
                logging.getLogger("genai_api").removeHandler(counter)
    repeats = sum(1 for body in bodies if body["messages"][0]["content"].startswith("stored"))
    hits = caches.count("HIT")
    print(f"genai_api from {Path(genai_api.__file__).parent}")
    print(
        f"while full, {clients} clients: {REQUESTS} requests ({repeats} repeats of stored "
        f"answers): hit ratio {hits / REQUESTS:.1%} ({hits} HIT), provider calls "
        f"{provider.call_count - before}, non-200 {sum(s != 200 for s in statuses)}, "
        f"WARNING lines {counter.warnings}, /readyz {ready.get('status')} "
        f"{ready.get('reasons', '')}"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        server = RedisServer(Path(workdir), extra_args=["--maxmemory-policy", "noeviction"]).start()
        try:
            asyncio.run(drill(server, int(sys.argv[1]) if len(sys.argv) > 1 else 2))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
