"""`genai-api serve` as a subprocess on a free port, for tests that need real sockets
(a browser, the stats command, several workers)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.redis_server import free_port

_UNSET = (
    "OPENAI_API_KEY",
    "PROVIDER",
    "CACHE_BACKEND",
    "REDIS_URL",
    "ADMIN_API_KEY",
    "PROMETHEUS_MULTIPROC_DIR",
    "GATEWAY_API_KEYS",
    "METRICS_REQUIRE_ADMIN",
)


@contextmanager
def live_server(cwd: Path, env: dict[str, str] | None = None, workers: int = 1) -> Iterator[str]:
    """Start the server with the offline mock provider; yield its base URL; stop it."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if k not in _UNSET}
    full_env.update(env or {})
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "genai_api",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=0.5).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
        if proc.poll() is not None:
            break
    else:
        proc.kill()
        pytest.fail("server did not start: " + (proc.communicate()[0] or ""))
    if proc.poll() is not None:
        pytest.fail("server exited: " + (proc.communicate()[0] or ""))
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
