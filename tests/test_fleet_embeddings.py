"""Embedding batches across the fleet: live `genai-api serve` processes sharing one Redis, the
fake upstream counting how often each input was asked for.

CONTRACT §4 per input: concurrent batches sharing inputs, anywhere in the fleet, fetch each
input once; a holder that dies lets one waiter fetch its inputs after the lease; Redis
faults never fail a request.
"""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.processes import Service, provider_calls
from tests.redis_server import RedisServer
from tests.test_fleet import Fleet, coalescing_fleet_wide, until

pytestmark = pytest.mark.redis

PATH = "/v1/embeddings"
MODEL = "text-embedding-3-small"


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path)
    try:
        yield fleet
    finally:
        fleet.close()


def asked(upstream: Service) -> Counter[str]:
    """How many times the upstream was asked for each input (by its JSON)."""
    return Counter(httpx.get(upstream.url + "/calls", timeout=5).json()["inputs"])


def body(inputs: list[str]) -> dict[str, object]:
    return {"model": MODEL, "input": inputs, "encoding_format": "base64"}


def by_input(answers: list[tuple[list[str], httpx.Response]]) -> dict[str, set[bytes]]:
    """Every vector answered for each input, across all answers."""
    seen: dict[str, set[bytes]] = {}
    for inputs, answer in answers:
        for item, row in zip(inputs, answer.json()["data"], strict=True):
            seen.setdefault(item, set()).add(base64.b64decode(row["embedding"]))
    return seen


def ask(text: str) -> str:
    return orjson.dumps(text).decode()


async def test_overlapping_batches_across_the_fleet_fetch_each_input_once(
    fleet: Fleet, redis_url: str
) -> None:
    upstream = fleet.upstream(300)
    a, b = fleet.gateways(redis_url, upstream, workers=(2, 1))
    pool = [f"shared input {i}" for i in range(12)]
    # Batch i asks for 5 consecutive inputs of the pool: neighbours overlap by 4.
    batches = [[pool[(i + j) % len(pool)] for j in range(5)] for i in range(24)]
    async with httpx.AsyncClient(timeout=30) as client:
        await until(lambda: coalescing_fleet_wide(client, [a, b]))
        answers = await asyncio.gather(
            *(
                client.post((a, b)[i % 2].url + PATH, json=body(batch))
                for i, batch in enumerate(batches)
            )
        )
    assert {r.status_code for r in answers} == {200}
    assert asked(upstream) == Counter({ask(item): 1 for item in pool})
    assert sum(int(r.headers["x-cache-misses"]) for r in answers) == len(pool)
    assert {r.headers["x-cache"] for r in answers} <= {"MISS", "COALESCED", "HIT"}
    seen = by_input(list(zip(batches, answers, strict=True)))
    assert all(len(vectors) == 1 for vectors in seen.values())  # one vector per input, everywhere


async def test_killed_holder_lets_one_waiter_fetch_its_inputs_after_the_lease(
    fleet: Fleet, redis_url: str
) -> None:
    upstream = fleet.upstream(1500)
    holder, other = fleet.gateways(redis_url, upstream, LEASE_SECONDS="1")
    held = ["held one", "held two", "held three"]
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(timeout=30) as client:
        await until(lambda: coalescing_fleet_wide(client, [holder, other]))
        first = asyncio.create_task(client.post(holder.url + PATH, json=body(held)))
        await until(lambda: asyncio.to_thread(lambda: sum(asked(upstream).values()) == 3))
        # Each waiter also asks for an input of its own, which it fetches at once.
        waiters = [
            asyncio.create_task(client.post(other.url + PATH, json=body([*held, f"own {i}"])))
            for i in range(5)
        ]
        await until(lambda: asyncio.to_thread(lambda: sum(asked(upstream).values()) == 3 + 5))
        await asyncio.sleep(0.3)
        holder.kill()
        killed_at = loop.time()
        answers = await asyncio.gather(*waiters)
        took = loop.time() - killed_at
        with pytest.raises(httpx.HTTPError):
            await first
    assert {a.status_code for a in answers} == {200}
    counts = asked(upstream)
    assert {item: counts[ask(item)] for item in held} == dict.fromkeys(held, 2)  # one more each
    assert all(counts[ask(f"own {i}")] == 1 for i in range(5))
    assert provider_calls(upstream) == 1 + 5 + 1
    assert sorted(int(a.headers["x-cache-misses"]) for a in answers) == [1, 1, 1, 1, 4]
    # lease (1 s) + poll + its own call (1.5 s), with slack for a loaded machine
    print(f"embedding waiters answered {took:.2f} s after the holder was killed")
    assert took < 1 + 1.5 + 4


async def test_redis_stopped_mid_load_fails_no_embeddings_request(
    fleet: Fleet, redis_server: RedisServer
) -> None:
    upstream = fleet.upstream(50)
    a, b = fleet.gateways(redis_server.url, upstream, REDIS_BREAKER_SECONDS="0.5")
    outcomes: list[tuple[int, str]] = []
    stop = asyncio.Event()

    async def load(client: httpx.AsyncClient, n: int) -> None:
        i = 0
        while not stop.is_set():
            batch = [f"load {(n + i + j) % 6}" for j in range(3)]
            answer = await client.post((a, b)[i % 2].url + PATH, json=body(batch))
            outcomes.append((answer.status_code, answer.headers.get("x-cache", "")))
            i += 1

    async with httpx.AsyncClient(timeout=30) as client:
        clients = [asyncio.create_task(load(client, n)) for n in range(6)]
        await asyncio.sleep(1.0)
        redis_server.stop()
        await asyncio.sleep(1.5)
        stop.set()
        await asyncio.gather(*clients)
        redis_server.start()

        async def hits_again() -> bool:
            await client.post(a.url + PATH, json=body(["after the restart"]))
            answer = await client.post(b.url + PATH, json=body(["after the restart"]))
            return answer.headers["x-cache"] == "HIT"

        await until(hits_again)
    assert {status for status, _ in outcomes} == {200}
    statuses = {cache for _, cache in outcomes}
    assert "BYPASS" in statuses and "HIT" in statuses
