"""The harness's own promises: a missing Redis fails under CI=true; no server outlives a run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.redis_server import require_redis

ROOT = Path(__file__).resolve().parent.parent


def test_missing_redis_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no redis-server"):
        require_redis()


def test_missing_redis_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require_redis()


def test_a_run_stopped_by_sigterm_stops_the_redis_server_it_started(tmp_path: Path) -> None:
    if not shutil.which("redis-server"):
        require_redis()
    pid_file = tmp_path / "redis.pid"
    (tmp_path / "test_hold.py").write_text(
        "import os, time\n"
        "from pathlib import Path\n"
        "def test_hold(redis_server):\n"
        "    Path(os.environ['PID_FILE']).write_text(str(redis_server.proc.pid))\n"
        "    time.sleep(60)\n"
    )
    # Without the property-testing plugins (they handle no signal): importing hypothesis and
    # schemathesis was half of the inner run's start-up (~1.5 s of CPU).
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "-p", "no:schemathesis", "-p", "no:hypothesispytest",
         "-q", "--rootdir", str(tmp_path), str(tmp_path / "test_hold.py")],
        cwd=ROOT, env={**os.environ, "PID_FILE": str(pid_file), "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists():
            assert run.poll() is None and time.monotonic() < deadline, "the inner run never began"
            time.sleep(0.05)
        redis_pid = int(pid_file.read_text())
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
    assert not _alive(redis_pid), "the redis-server outlived the run that started it"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"
