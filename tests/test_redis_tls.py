"""`rediss://` URLs: TLS connections for the store, the leases and their subscription."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
import respx

from genai_api.store.redis import RedisStore, redis_options
from tests.conftest import CHAT, chat_response, make_settings, running, wait_until
from tests.redis_server import RedisServer, free_port

pytestmark = pytest.mark.redis


def test_rediss_url_makes_ssl_connections() -> None:
    url = "rediss://:pw@cache.example:6380/4?ssl_cert_reqs=required&ssl_ca_certs=/etc/ca.pem"
    options = redis_options(url, host="", port=0, password=None, db=0)
    store = RedisStore(options, timeout=0.2, max_connections=4, breaker_seconds=1)
    pool = store.client.connection_pool
    assert issubclass(pool.connection_class, aioredis.SSLConnection)
    kwargs = pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["password"]) == (
        "cache.example", 6380, 4, "pw"
    )  # fmt: skip
    assert kwargs["ssl_ca_certs"] == "/etc/ca.pem"


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[RedisServer, Path]]:
    """A redis-server speaking only TLS, with a throwaway self-signed certificate."""
    if not shutil.which("redis-server") or not shutil.which("openssl"):
        pytest.skip("needs redis-server and openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    server = RedisServer(
        tmp_path,
        port=port,
        extra_args=["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
                    "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
                    "--tls-auth-clients", "no"],
    )  # fmt: skip
    try:
        server.start()
    except RuntimeError:
        pytest.skip("this redis-server was built without TLS")
    yield server, cert
    server.stop()


async def test_gateway_caches_and_subscribes_over_tls(
    upstream: respx.MockRouter, tls_redis: tuple[RedisServer, Path]
) -> None:
    server, cert = tls_redis
    route = upstream.post("/chat/completions").mock(
        return_value=httpx.Response(200, json=chat_response())
    )
    url = f"rediss://127.0.0.1:{server.port}/0?ssl_cert_reqs=required&ssl_ca_certs={cert}"
    async with running(make_settings(cache_backend="redis", redis_url=url)) as gw:
        await wait_until(lambda: gw.gateway.pipeline.leases.state == "fleet")
        for _ in range(100):  # the first TLS connection may outlast REDIS_TIMEOUT on a busy box
            if (await gw.http.get("/readyz")).status_code == 200:
                break
            await asyncio.sleep(0.05)
        first = await gw.http.post("/v1/chat/completions", json=CHAT)
        second = await gw.http.post("/v1/chat/completions", json=CHAT)
        ready = await gw.http.get("/readyz")
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert route.call_count == 1
    assert ready.json()["coalescing"] == "fleet"
