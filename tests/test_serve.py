"""`genai-api serve` as a user runs it: a live uvicorn with the offline mock provider."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import CHAT
from tests.redis_server import free_port
from tests.test_bounded_protocol import answer, trickle

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OPENAI_API_KEY", "PROVIDER", "CACHE_BACKEND", "REDIS_URL")
    }
    env["PYTHONPATH"] = str(ROOT)  # this checkout's package, not whichever the venv installed
    proc = subprocess.Popen(
        [sys.executable, "-m", "genai_api", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=0.5).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("server did not start: " + (proc.stdout.read() if proc.stdout else ""))
    try:
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_serve_uses_mock_provider_without_key_and_caches(
    server: tuple[str, subprocess.Popen[str]],
) -> None:
    url, proc = server
    first = httpx.post(url + "/v1/chat/completions", json=CHAT, timeout=10)
    second = httpx.post(url + "/v1/chat/completions", json=CHAT, timeout=10)
    assert first.status_code == 200
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert "mock answer" in first.json()["choices"][0]["message"]["content"]
    proc.terminate()
    output = proc.communicate(timeout=15)[0]
    assert "provider: mock" in output
    assert "POST /v1/chat/completions 200 cache=HIT model=gpt-4o-mini" in output
    assert "Say hello" not in output  # prompts are not logged


async def test_serve_refuses_an_oversized_head_with_431_and_keeps_serving(
    server: tuple[str, subprocess.Popen[str]],
) -> None:
    url, _ = server
    port = int(url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nX-Big: "
    await trickle(writer, [head] + [b"a" * 65536] * 16, 0.001)  # 1 MiB of one header
    status, body = await answer(reader)
    writer.close()
    assert status == 431
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        assert (await http.post("/v1/chat/completions", json=CHAT)).status_code == 200
