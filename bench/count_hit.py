"""Instructions per chat cache hit, as callgrind counts them, for each outer configuration.

Timings on a shared machine cannot tell apart a few hundred nanoseconds; instruction counts
can, and are repeatable whatever else runs. This runs itself under `valgrind --tool=callgrind`
(a few minutes: the interpreter runs ~50 times slower), builds the app (memory store, mock
provider), warms every configuration, freezes the garbage collector as served workers do, then
times `-n` hits per configuration between two dumps of callgrind's counters, switching only
what the configuration changes (the hot path's compressor, the CORS wrapper, the request's
headers). README "Compression" quotes its figures.

    python -m bench.count_hit            # needs valgrind (Debian: apt-get install valgrind)
    python -m bench.count_hit -n 500
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

BODY = orjson.dumps(
    {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Question 1: where is my order number 1001?"}],
        "temperature": 0,
    }
)
HEADERS = [
    (b"host", b"gw"),
    (b"content-type", b"application/json"),
    (b"authorization", b"Bearer bench-key"),
    (b"content-length", str(len(BODY)).encode()),
]
GZIP = [(b"accept-encoding", b"gzip, deflate")]
ORIGIN = [(b"origin", b"http://page.test")]
CONFIGURATIONS = (
    "compression off, CORS off",
    "default (gzip on), client does not ask",
    "default, client sends Accept-Encoding: gzip",
    "CORS on, a POST without Origin",
    "CORS on, a page's call (Origin)",
    "compression off, CORS off (again)",
    "default (again)",
)


def _scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("gw", 80),
    }


async def _call(app: Any, headers: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(_scope(headers), receive, send)
    return sent


def _dump() -> None:
    subprocess.run(["callgrind_control", "-d", str(os.getpid())], check=True, capture_output=True)


async def _child(n: int) -> None:
    os.environ.update(
        PROVIDER="mock", CACHE_BACKEND="memory", LOG_LEVEL="WARNING", GATEWAY_API_KEYS="bench-key"
    )
    from genai_api.app import create_app
    from genai_api.http.cors import with_cors
    from genai_api.http.hot_routes import HotEndpoints
    from genai_api.settings import Settings

    app = create_app(Settings(_env_file=None))  # type: ignore[call-arg]
    async with app.router.lifespan_context(app):
        endpoints = app.hot
        while not isinstance(endpoints, HotEndpoints):
            endpoints = endpoints.app  # inside the hot path's middlewares
        gzip = endpoints.compress
        cors = with_cors(app._dispatch, ("http://page.test",))
        runs = [
            (None, None, HEADERS),
            (None, gzip, HEADERS),
            (None, gzip, HEADERS + GZIP),
            (cors, gzip, HEADERS),
            (cors, gzip, HEADERS + ORIGIN),
            (None, None, HEADERS),
            (None, gzip, HEADERS),
        ]
        for outer, compress, headers in runs:  # build everything built lazily
            app.outer, endpoints.compress = outer, compress
            for _ in range(50):
                sent = await _call(app, headers)
            assert (b"x-cache", b"HIT") in sent[0]["headers"], sent[0]
        gc.collect()
        gc.freeze()
        _dump()
        for outer, compress, headers in runs:
            app.outer, endpoints.compress = outer, compress
            for _ in range(n):
                await _call(app, headers)
            _dump()


def _total(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise ValueError(f"no total in {path}")


def callgrind_child(module: str, n: int, folder: Path) -> Path:
    """Run `python -m <module> --child -n <n>` under callgrind (the child dumps a part per
    stage with `_dump`); the path the parts are numbered after (`<path>.1`, `.2`, ...)."""
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    out = folder / "cg.out"
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            module,
            "--child",
            "-n",
            str(n),
        ],
        env={**os.environ, "PYTHONHASHSEED": "0"},
        check=True,
        capture_output=True,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=2000, help="hits per configuration")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(_child(args.n))
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = callgrind_child("bench.count_hit", args.n, Path(tmp))
        # Part 1 is start-up and warm-up; part k + 2 the k-th configuration's hits.
        print(f"{'a chat cache hit':<44} {'instructions':>12}")
        for k, name in enumerate(CONFIGURATIONS):
            per_hit = _total(Path(f"{out}.{k + 2}")) / args.n
            print(f"{name:<44} {per_hit:>12,.0f}")


if __name__ == "__main__":
    main()
