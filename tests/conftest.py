"""Fixtures that build real things: a throwaway redis-server, an app with a respx provider."""

from __future__ import annotations

import asyncio
import functools
import io
import json
import logging
import logging.config
import re
import shutil
import signal
import ssl
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import respx
from fastapi import FastAPI

from genai_api.app import create_app
from genai_api.logs import logging_config
from genai_api.settings import Settings
from tests.processes import Service, fake_upstream
from tests.redis_server import RedisServer, external_redis_url, require_redis
from tests.redis_topologies import RedisClusterServers, SentinelSet

UPSTREAM = "http://upstream.test/v1"


def pytest_configure(config: pytest.Config) -> None:
    """A run stopped by SIGTERM (`pkill -f pytest`, a CI timeout) still tears its fixtures down.

    Python's default SIGTERM ends the process at once: no finalizer runs, and every
    redis-server, gateway and fake upstream the run started outlives it, adding load and
    holding ports for whatever runs next. As a KeyboardInterrupt, pytest stops the session
    and tears down what was set up.
    """
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signum}")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis shared by the session (tests isolate themselves by namespace)."""
    if shutil.which("redis-server"):
        server = RedisServer(tmp_path_factory.mktemp("redis")).start()
        try:
            yield server.url
        finally:
            server.stop()
    elif external_redis_url():
        yield str(external_redis_url())
    else:
        require_redis()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """A 3-primary + 3-replica cluster shared by the session: never killed (fault tests
    start their own), tests isolate themselves by namespace."""
    cluster = RedisClusterServers(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    """A primary, a replica and three sentinels shared by the session (never failed over:
    not kept waiting ~2 s for the sentinels to find each other)."""
    sentinels = SentinelSet(tmp_path_factory.mktemp("sentinel"))
    try:
        yield sentinels.start(failover=False)
    finally:
        sentinels.stop()


TOPOLOGIES = ("standalone", "cluster", "sentinel")


def topology_settings(request: pytest.FixtureRequest, mode: str) -> dict[str, Any]:
    """The settings that point a gateway at the session's Redis of topology `mode`."""
    if mode == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        return {"cache_backend": "redis", "redis_mode": "cluster", "redis_url": cluster.url}
    if mode == "sentinel":
        sentinels = request.getfixturevalue("redis_sentinel")
        return {
            "cache_backend": "redis",
            "redis_mode": "sentinel",
            "redis_sentinels": sentinels.sentinels_setting,
        }
    return {"cache_backend": "redis", "redis_url": request.getfixturevalue("redis_url")}


@pytest.fixture(params=TOPOLOGIES)
def topology(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings overrides for one Redis topology; a test using it runs once per topology."""
    return topology_settings(request, str(request.param))


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, to kill and restart."""
    if not shutil.which("redis-server"):
        require_redis()
    server = RedisServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def live_upstream(tmp_path: Path) -> Iterator[Service]:
    """The fake OpenAI upstream as a live server of its own (counts calls: `provider_calls`)."""
    service = fake_upstream(tmp_path, latency_ms=0)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def upstream() -> Iterator[respx.MockRouter]:
    """The provider, mocked at the HTTP layer: the real openai SDK talks to it."""
    with respx.mock(base_url=UPSTREAM, assert_all_called=False) as router:
        yield router


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "cache_backend": "memory",
        "provider": "openai",
        "openai_api_key": "sk-test-upstream",
        "openai_base_url": UPSTREAM,
        "upstream_http_client": "httpx",
        "cache_namespace": f"t{uuid.uuid4().hex[:12]}",
        "redis_url": None,
        # A loaded CI machine can stall a Redis reply past the 0.2 s default, and the request
        # then (correctly) bypasses: a test asserting HIT or MISS would fail for the machine's
        # sake. Tests of a slow or hung Redis set their own, short `redis_timeout`.
        "redis_timeout": 2.0,
        # Tests of the caching machinery repeat one sampled request from one client, which
        # within the window is a regenerate (a fresh answer); tests/test_variants.py tests
        # regenerates with their own settings.
        "cache_regenerate_seconds": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class Running:
    app: FastAPI
    http: httpx.AsyncClient
    client: openai.AsyncOpenAI

    @property
    def gateway(self) -> Any:
        return self.app.state.gateway


@functools.cache
def _tls() -> ssl.SSLContext:
    """httpx's default TLS context, made once: building it (reading the CA bundle) is ~18 ms
    of CPU, paid by every `httpx.AsyncClient()`, i.e. by every test app started."""
    return httpx.create_ssl_context()


@asynccontextmanager
async def running(settings: Settings, api_key: str = "client-key") -> AsyncIterator[Running]:
    """The app with its lifespan run, an httpx client and an openai client pointed at it."""
    app = create_app(settings, http_client=httpx.AsyncClient(verify=_tls()))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            client = openai.AsyncOpenAI(
                base_url="http://gw/v1", api_key=api_key, http_client=http, max_retries=0
            )
            yield Running(app, http, client)


@pytest.fixture
def settings_factory() -> Callable[..., Settings]:
    return make_settings


def chat_response(
    content: str = "Hello there!", prompt: int = 12, completion: int = 5, n: int = 1
) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": content},
                "logprobs": None,
                "finish_reason": "stop",
            }
            for i in range(n)
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def completion_response(
    text: str = " world", prompt: int = 3, completion: int = 2
) -> dict[str, Any]:
    return {
        "id": f"cmpl-{uuid.uuid4().hex[:12]}",
        "object": "text_completion",
        "created": 1_700_000_000,
        "model": "gpt-3.5-turbo-instruct",
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]}


@pytest.fixture
def redis_binary() -> None:
    """For tests that start their own redis-server (with a password, as a replica...)."""
    if not shutil.which("redis-server"):
        require_redis()


def stats_doc(answer: httpx.Response) -> dict[str, Any]:
    """`/v1/cache/stats` as a script should read it: every dollar figure checked to be a plain
    JSON number (not a string, no exponent), then read as an exact `Decimal`, never through a
    float (`hit_ratio` too: compare it with a `Decimal`)."""
    assert answer.status_code == 200, answer.text
    dollars = re.findall(rb'"cost_(?:saved|spent)_usd":([^,}]*)', answer.content)
    assert dollars and all(re.fullmatch(rb"(0|[1-9][0-9]*)(\.[0-9]*[1-9])?", d) for d in dollars), (
        sorted(set(dollars))[:5]
    )
    doc: dict[str, Any] = json.loads(answer.content, parse_float=Decimal)
    return doc


async def wait_until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Wait for something another task does (a subscription, a flag set by a script)."""
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


class Calls:
    """Counts the calls of `owner.name` (behaviour unchanged): a test waits for a request to
    reach a step (`Coalescer.join`: it is on a flight) instead of sleeping a fixed time, which
    a loaded machine can outlast before the request gets there."""

    def __init__(self, owner: Any, name: str) -> None:
        self.count = 0
        original = getattr(owner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return original(*args, **kwargs)

        setattr(owner, name, counted)


async def until_hit(
    gw: Running, body: dict[str, Any], path: str = "/v1/chat/completions", within: float = 5.0
) -> httpx.Response:
    """Ask `body` until it is a HIT, for at most `within` s; the last answer (the caller
    asserts on it). A request right after the one that stored the entry can arrive while that
    one's background work (the store, the end of its flight) still runs, on a loaded machine
    long enough to make it a MISS or COALESCED. A test that also counts provider calls still
    proves that no request in between went upstream."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        answer = await gw.http.post(path, json=body)
        if answer.headers.get("x-cache") == "HIT" or asyncio.get_running_loop().time() > deadline:
            return answer
        await asyncio.sleep(0.05)


@pytest.fixture(scope="session")
def search_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis with the query engine, shared by the session (tests isolate by namespace)."""
    from tests.search_server import (
        SearchServer,
        external_search_url,
        require_search,
        search_binaries,
    )

    if search_binaries() is not None:
        server = SearchServer(tmp_path_factory.mktemp("search")).start()
        try:
            yield server.url
        finally:
            server.stop()
    elif external_search_url():
        yield str(external_search_url())
    else:
        require_search()


@pytest.fixture
def configured() -> Iterator[io.StringIO]:
    """`logging_config()` applied as uvicorn applies it, writing into a buffer; then undone."""
    names = ["", "uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore", "openai"]
    saved = {
        name: (lg.handlers[:], lg.level, lg.propagate, lg.filters[:])
        for name in names
        for lg in [logging.getLogger(name)]
    }
    logging.config.dictConfig(logging_config("INFO"))
    buffer = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    try:
        yield buffer
    finally:
        for name, (handlers, level, propagate, filters) in saved.items():
            lg = logging.getLogger(name)
            lg.handlers[:], lg.level, lg.propagate, lg.filters[:] = (
                handlers,
                level,
                propagate,
                filters,
            )
