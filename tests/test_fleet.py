"""The fleet: live `genai-api serve` processes sharing one Redis, the fake upstream counting.

CONTRACT §4: concurrent identical misses anywhere in the fleet make one provider call; a
holder that dies lets one waiter take over after its lease; Redis faults never fail a
request. Timings asserted here are contract bounds with generous slack for a loaded machine.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import CHAT
from tests.processes import Service, fake_upstream, gateway, provider_calls
from tests.redis_server import RedisServer, require_redis

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_binary() -> None:
    """For tests that start their own redis-server (with a password, as a replica...)."""
    if not shutil.which("redis-server"):
        require_redis()


CHAT_PATH = "/v1/chat/completions"


class Fleet:
    """Everything a test started; `close()` stops it all."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.services: list[Service] = []
        self.namespace = f"f{uuid.uuid4().hex[:10]}"

    def upstream(self, latency_ms: float) -> Service:
        service = fake_upstream(self.workdir, latency_ms)
        self.services.append(service)
        return service

    def gateways(
        self, redis_url: str, upstream: Service, *, workers: tuple[int, ...] = (1, 1), **env: str
    ) -> list[Service]:
        values = {
            "CACHE_BACKEND": "redis",
            "REDIS_URL": redis_url,
            "PROVIDER": "openai",
            "OPENAI_API_KEY": "x",
            "OPENAI_BASE_URL": upstream.url + "/v1",
            "UPSTREAM_HTTP_CLIENT": "aiohttp",
            "CACHE_NAMESPACE": self.namespace,
            "LOG_LEVEL": "WARNING",
            **env,
        }
        started = [gateway(self.workdir, values, workers=n) for n in workers]
        self.services.extend(started)
        for service in started:
            service.wait_ready()
        return started

    def close(self) -> None:
        for service in self.services:
            service.stop()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path)
    try:
        yield fleet
    finally:
        fleet.close()


async def until(check: Any, within: float = 15.0) -> None:
    """Await `check()` (a coroutine function) until it is true."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.05)


async def coalescing_fleet_wide(client: httpx.AsyncClient, services: list[Service]) -> bool:
    states = [(await client.get(s.url + "/readyz")).json().get("coalescing") for s in services]
    return all(state == "fleet" for state in states)


async def test_fifty_identical_requests_across_the_fleet_make_one_provider_call(
    fleet: Fleet, tmp_path: Path, redis_binary: None
) -> None:
    redis = RedisServer(tmp_path, password="fleet pass").start()
    try:
        upstream = fleet.upstream(300)
        url = f"redis://:fleet%20pass@127.0.0.1:{redis.port}/2"
        many, one = fleet.gateways(url, upstream, workers=(2, 1), LOG_LEVEL="INFO")
        assert len(many.children()) >= 2  # `serve --workers 2`: two worker processes
        async with httpx.AsyncClient(timeout=30) as client:
            await until(lambda: coalescing_fleet_wide(client, [many, one]))
            answers = await asyncio.gather(
                *(client.post(s.url + CHAT_PATH, json=CHAT) for s in [many, one] * 25)
            )
        calls = provider_calls(upstream)
    finally:
        redis.stop()
    assert {a.status_code for a in answers} == {200}
    assert calls == 1
    statuses = Counter(a.headers["x-cache"] for a in answers)
    assert (
        statuses["MISS"] == 1 and statuses["MISS"] + statuses["COALESCED"] + statuses["HIT"] == 50
    )
    assert len({a.json()["choices"][0]["message"]["content"] for a in answers}) == 1
    # Workers are spawned processes: each sets up logging (the access log) itself. Their
    # access lines are written within FLUSH_SECONDS plus the loop's lag: wait for them.
    line = "POST /v1/chat/completions 200 cache="

    async def logged() -> bool:
        return many.output().count(line) >= 25

    await until(logged, within=5.0)
    assert many.output().count(line) == 25


async def test_killed_holder_lets_one_waiter_take_over_after_its_lease(
    fleet: Fleet, redis_url: str
) -> None:
    upstream = fleet.upstream(1500)
    holder, other = fleet.gateways(redis_url, upstream, LEASE_SECONDS="1")
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(timeout=30) as client:
        await until(lambda: coalescing_fleet_wide(client, [holder, other]))
        first = asyncio.create_task(client.post(holder.url + CHAT_PATH, json=CHAT))
        await until(lambda: asyncio.to_thread(lambda: provider_calls(upstream) == 1))
        waiters = [
            asyncio.create_task(client.post(other.url + CHAT_PATH, json=CHAT)) for _ in range(10)
        ]
        await asyncio.sleep(0.3)
        holder.kill()
        killed_at = loop.time()
        answers = await asyncio.gather(*waiters)
        took = loop.time() - killed_at
        with pytest.raises(httpx.HTTPError):
            await first
    assert {a.status_code for a in answers} == {200}
    assert provider_calls(upstream) == 2
    assert Counter(a.headers["x-cache"] for a in answers) == {"MISS": 1, "COALESCED": 9}
    # lease (1 s) + poll + its own call (1.5 s), with slack for a loaded machine
    print(f"waiters answered {took:.2f} s after the holder was killed")
    assert took < 1 + 1.5 + 4


async def test_redis_stopped_mid_load_fails_no_request_and_hits_resume(
    fleet: Fleet, redis_server: RedisServer
) -> None:
    upstream = fleet.upstream(50)
    a, b = fleet.gateways(redis_server.url, upstream, REDIS_BREAKER_SECONDS="0.5")
    outcomes: list[tuple[int, str]] = []
    stop = asyncio.Event()

    async def load(client: httpx.AsyncClient, n: int) -> None:
        i = 0
        while not stop.is_set():
            body = {**CHAT, "messages": [{"role": "user", "content": f"q{(n + i) % 4}"}]}
            answer = await client.post((a, b)[i % 2].url + CHAT_PATH, json=body)
            outcomes.append((answer.status_code, answer.headers.get("x-cache", "")))
            i += 1

    async with httpx.AsyncClient(timeout=30) as client:
        clients = [asyncio.create_task(load(client, n)) for n in range(8)]
        await asyncio.sleep(1.0)
        redis_server.stop()
        await asyncio.sleep(1.5)
        stop.set()
        await asyncio.gather(*clients)
        redis_server.start()

        fresh = {**CHAT, "messages": [{"role": "user", "content": "after the restart"}]}

        async def hits_again() -> bool:
            await client.post(a.url + CHAT_PATH, json=fresh)
            return (await client.post(b.url + CHAT_PATH, json=fresh)).headers["x-cache"] == "HIT"

        await until(hits_again)
    assert {status for status, _ in outcomes} == {200}
    statuses = {cache for _, cache in outcomes}
    assert "BYPASS" in statuses and "HIT" in statuses


class HungRedis:
    """A TCP server that accepts connections and never answers: a hung Redis."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = int(self.sock.getsockname()[1])
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


async def test_hung_redis_costs_at_most_one_short_timeout(fleet: Fleet) -> None:
    hung = HungRedis()
    try:
        upstream = fleet.upstream(300)
        (gw,) = fleet.gateways(f"redis://127.0.0.1:{hung.port}/0", upstream, workers=(1,))
        loop = asyncio.get_running_loop()
        timings: list[float] = []
        answers: list[httpx.Response] = []
        async with httpx.AsyncClient(timeout=30) as client:
            ready = await client.get(gw.url + "/readyz")
            for i in range(8):  # ~3 s: spans a few breaker cool-downs (1 s each)
                body = {**CHAT, "messages": [{"role": "user", "content": f"hung {i}"}]}
                start = loop.time()
                burst = await asyncio.gather(
                    *(client.post(gw.url + CHAT_PATH, json=body) for _ in range(3))
                )
                timings.append(loop.time() - start)
                answers.extend(burst)
                await asyncio.sleep(0.05)
    finally:
        hung.close()
    assert ready.status_code == 503
    assert {a.status_code for a in answers} == {200}
    # Each burst: one flight through the provider (BYPASS), its twins coalesced in-process.
    assert Counter(a.headers["x-cache"] for a in answers) == {"BYPASS": 8, "COALESCED": 16}
    # Contract: upstream latency + 250 ms; asserted with slack for a loaded 2-core machine.
    print("hung-redis burst latencies (s):", [round(t, 3) for t in timings])
    assert max(timings) < 0.3 + 1.0, timings
