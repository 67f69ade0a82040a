"""A throwaway `redis-server` on a free port: fast, isolated, and killable for fault tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.ports import free_port

__all__ = ["RedisServer", "external_redis_url", "free_port", "require_redis"]


class RedisServer:
    """A redis-server process the tests own; `stop()`/`start()` simulate an outage."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        password: str | None = None,
        extra_args: list[str] | None = None,
        binary: str | None = None,
    ) -> None:
        self.binary = binary or shutil.which("redis-server")
        if self.binary is None:
            raise RuntimeError("redis-server is not installed")
        self.workdir = workdir
        self.port = port or free_port()
        self.password = password
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [
            str(self.binary),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--notify-keyspace-events",
            "",
            "--loglevel",
            "warning",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra_args
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:  # it could not bind: whatever answers is not ours
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


@contextmanager
def capped(folder: Path, policy: str, maxmemory: str = "8mb") -> Iterator[RedisServer]:
    """A throwaway redis-server with `maxmemory` and `maxmemory-policy` set: to fill."""
    server = RedisServer(
        folder, extra_args=["--maxmemory", maxmemory, "--maxmemory-policy", policy]
    ).start()
    try:
        yield server
    finally:
        server.stop()


def external_redis_url() -> str | None:
    return os.environ.get("REDIS_URL") or None


def require_redis() -> None:
    """Skip when no Redis can be had; under CI=true that is a failure, not a skip."""
    message = "no redis-server binary and no REDIS_URL: Redis integration tests cannot run"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)
