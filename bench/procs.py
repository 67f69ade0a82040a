"""The processes a benchmark run starts: pinned, in their own process groups, always stopped.

Every server runs under `taskset` in a new session, so stopping it kills its whole group
(uvicorn, redis-server, anything they spawned). `Fleet` remembers what it started and stops
it in `close()`, from `atexit`, and on SIGTERM/SIGINT, so a failed or interrupted run leaves
nothing behind. CPU time and RSS come straight from /proc, the steadiest figures on a noisy
machine.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.ports import free_port

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
ROOT = Path(__file__).resolve().parent.parent


def cores() -> tuple[str | None, str | None]:
    """(server core, load core); None when the machine has one core and pinning is moot."""
    if (os.cpu_count() or 1) < 2 or shutil.which("taskset") is None:
        return None, None
    return "0", "1"


def pinned(argv: Sequence[str], core: str | None) -> list[str]:
    return ["taskset", "-c", core, *argv] if core is not None else list(argv)


class Process:
    """One server the run owns; `pid` is the server itself (taskset execs it)."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.name = name
        self.proc = proc
        self.port = port
        self.log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """utime + stime of the process (all its threads) so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_bytes(self) -> int:
        return int(Path(f"/proc/{self.pid}/statm").read_text().split()[1]) * PAGE

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


class Fleet:
    """Starts servers and guarantees they stop, however the run ends."""

    def __init__(self) -> None:
        self.started: list[Process] = []
        self.workdir = Path(tempfile.mkdtemp(prefix="genai-bench-"))
        atexit.register(self.close)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._interrupted)

    def _interrupted(self, signum: int, frame: object) -> None:
        self.close()
        sys.exit(128 + signum)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        port: int,
        core: str | None,
        env: dict[str, str] | None = None,
        ready_timeout: float = 30.0,
        cwd: Path | None = None,
    ) -> Process:
        """Start `argv` pinned to `core` (from `cwd`, default this checkout) and wait until
        it listens on `port`."""
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                pinned(argv, core),
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=str(cwd or ROOT),
                start_new_session=True,
            )
        process = Process(name, proc, port, log)
        self.started.append(process)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if not process.alive():
                raise RuntimeError(f"{name} exited on start-up:\n{process.tail()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return process
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{name} did not listen on port {port}:\n{process.tail()}")

    def stop(self, process: Process) -> None:
        process.stop()
        if process in self.started:
            self.started.remove(process)

    def close(self) -> None:
        while self.started:
            self.started.pop().stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def python(self, module: str, *args: str) -> list[str]:
        return [sys.executable, "-m", module, *args]

    def redis(self, core: str | None) -> tuple[Process, str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
        port = free_port()
        argv = [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--loglevel",
            "warning",
        ]
        return self.start("redis", argv, port=port, core=core), f"redis://127.0.0.1:{port}/0"
