"""Load from `wrk` (Debian's package), pinned to the load core, driven by a generated Lua script.

The script POSTs JSON bodies: it cycles through a fixed list (cache hits), or makes every
k-th body unique with a counter and a per-round nonce (misses that no earlier round stored).
Its `done` hook prints one JSON line with wrk's own latency percentiles, so nothing is
parsed from wrk's human-readable table. The server's CPU time is read around the run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.procs import Process, pinned

INSTALL_HINT = "wrk is not installed: apt-get install -y wrk (Debian/Ubuntu), then run again."

_LUA = r"""
local bodies = { %(bodies)s }
local every = %(every)d
local pre, post = [==[%(pre)s]==], [==[%(post)s]==]
local nonce = "%(nonce)s"
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(token)s"
request = function()
  n = n + 1
  local body
  if every > 0 and n %% every == 0 then
    body = pre .. nonce .. n .. post
  else
    body = bodies[(n %% #bodies) + 1]
  end
  return wrk.format(nil, nil, nil, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,' ..
    '"max_us":%%d,"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""

UNIQUE = "@@UNIQUE@@"


@dataclass
class Load:
    """What to send: hit bodies to cycle, and optionally a template made unique every k-th."""

    bodies: Sequence[bytes]
    unique_template: bytes | None = None
    unique_every: int = 0  # 0: never, 1: every request, 5: one in five
    token: str = "bench-key"


@dataclass
class Sample:
    target: str
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    errors: int
    cpu_us_per_req: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def available() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(body: bytes) -> str:
    text = body.decode()
    if "]==]" in text:
        raise ValueError("body contains the Lua long-string terminator")
    return f"[==[{text}]==]"


def script(load: Load, workdir: Path) -> Path:
    """A fresh Lua script for one run (a new nonce each time, so misses stay misses)."""
    pre, post = b"", b""
    if load.unique_template is not None:
        pre, _, post = load.unique_template.partition(UNIQUE.encode())
    bodies = load.bodies or [load.unique_template or b"{}"]
    text = _LUA % {
        "bodies": ", ".join(_lua_string(b) for b in bodies),
        "every": load.unique_every,
        "pre": pre.decode(),
        "post": post.decode(),
        "nonce": uuid.uuid4().hex[:12],
        "token": load.token,
    }
    path = workdir / f"load-{uuid.uuid4().hex[:8]}.lua"
    path.write_text(text)
    return path


def run(
    target: str,
    server: Process,
    url: str,
    load: Load,
    *,
    connections: int,
    seconds: float,
    core: str | None,
    workdir: Path,
) -> Sample:
    """One wrk run against `url`; CPU per request is the server's utime+stime delta / requests."""
    lua = script(load, workdir)
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "--timeout",
        "5s",
        "-s",
        str(lua),
        url,
    ]
    cpu_before = server.cpu_seconds()
    done = subprocess.run(
        pinned(argv, core), capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    cpu = server.cpu_seconds() - cpu_before
    lua.unlink(missing_ok=True)
    line = next((s for s in done.stdout.splitlines() if s.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    data = json.loads(line.removeprefix("WRKJSON "))
    requests = max(1, int(data["requests"]))
    errors = sum(int(data[k]) for k in ("connect", "read", "write", "status", "timeout"))
    return Sample(
        target=target,
        rps=requests / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        requests=requests,
        errors=errors,
        cpu_us_per_req=cpu * 1e6 / requests,
    )
