"""Live servers for multi-process tests: `genai-api serve` processes and the fake upstream.

Each runs in its own session, so stopping it stops its whole process group (uvicorn's
workers included); `kill()` is a SIGKILL of the server itself, to play a crashed holder.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent


class Service:
    def __init__(self, argv: list[str], *, env: Mapping[str, str], cwd: Path, port: int) -> None:
        self.port = port
        self.log = cwd / f"service-{port}.log"
        full_env = {**os.environ, **env}
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p
        )
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, cwd=cwd, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, path: str = "/healthz", timeout: float = 30.0) -> None:
        # One client for every poll: `httpx.get` builds a client, SSL context included, each
        # time (~18 ms of CPU), a quarter of a core taken from the server starting meanwhile.
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    if client.get(self.url + path).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"service on {self.port} did not get ready:\n{self.output()[-4000:]}")

    def children(self) -> list[int]:
        """Pids whose parent is this service (uvicorn's worker processes)."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                    found.append(int(stat.parent.name))
        return found

    def kill(self) -> None:
        """SIGKILL the server process only: a crash, no clean-up of any kind."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def fake_upstream(
    cwd: Path,
    latency_ms: float,
    *,
    api_key: str | None = None,
    models: list[str] | None = None,
    fail: int | None = None,
) -> Service:
    """The fake OpenAI upstream (`bench.fake_upstream`); `api_key`: the bearer it insists on,
    `models`: what its `GET /v1/models` lists, `fail`: the status it answers every call with."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.fake_upstream", "--port", str(port)]
    argv += ["--latency-ms", str(latency_ms)]
    if api_key is not None:
        argv += ["--api-key", api_key]
    if models is not None:
        argv += ["--models", ",".join(models)]
    if fail is not None:
        argv += ["--fail", str(fail)]
    service = Service(argv, env={}, cwd=cwd, port=port)
    service.wait_ready("/calls")
    return service


def gateway(cwd: Path, env: Mapping[str, str], *, workers: int = 1) -> Service:
    port = free_port()
    argv = [sys.executable, "-m", "genai_api", "serve", "--port", str(port)]
    return Service([*argv, "--workers", str(workers)], env=env, cwd=cwd, port=port)


def provider_calls(upstream: Service) -> int:
    return int(httpx.get(upstream.url + "/calls", timeout=5).json()["total"])


def upstream_calls(upstream: Service) -> dict[str, Any]:
    """What the fake upstream was sent: calls by path, model names, bearers."""
    answer: dict[str, Any] = httpx.get(upstream.url + "/calls", timeout=5).json()
    return answer


def set_mode(upstream: Service, **mode: object) -> None:
    """Make the fake upstream fail (`fail=503`), hang (`hang=True`) or cut streams short."""
    httpx.post(upstream.url + "/mode", json=mode, timeout=5).raise_for_status()
