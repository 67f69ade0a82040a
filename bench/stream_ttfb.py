"""Time to first chunk of a streamed chat completion (or, with `--api responses`, of a
streamed Responses API answer: its first event): straight from a local fake provider, and
through the gateway on a miss and on a hit.

    python -m bench.stream_ttfb [--requests 30] [--first-ms 50] [--api responses]

Starts its own fake streaming upstream and a `genai-api serve` (memory cache, the default
aiohttp upstream client) as subprocesses on free ports, measures, prints a table, and stops
both. Bounded to about 30 s. The fake upstream waits `--first-ms` before its first chunk
(a model's time to first token), then sends 20 chunks 2 ms apart, then `[DONE]` (for the
Responses API: the typed events of a 20-delta answer, 2 ms apart, ending `response.completed`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson

from bench.ports import free_port

DEADLINE_S = 30.0
PIECES = 20


# --- the fake upstream (run as `python -m bench.stream_ttfb --upstream PORT`) --------------


def _chunk(n: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
    doc = {
        "id": f"chatcmpl-bench{n}",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
    }
    return b"data: " + orjson.dumps(doc) + b"\n\n"


def _events() -> list[bytes]:
    """A Responses API stream of `PIECES` deltas, as the fake upstream of the bench sends it."""
    from bench import fake_responses

    text = " ".join(f"word{i}" for i in range(PIECES))
    events = list(fake_responses.events({"model": "gpt-4o-mini", "input": text}))
    return [fake_responses.sse(e) for e in events]


def upstream_app(first_ms: float) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await asyncio.sleep(first_ms / 1000)
        body = {"type": "http.response.body", "more_body": True}
        if scope["path"].endswith("/responses"):
            for event in _events():
                await send({**body, "body": event})
                await asyncio.sleep(0.002)
            await send({**body, "body": b"", "more_body": False})
            return
        await send({**body, "body": _chunk(0, {"role": "assistant", "content": ""})})
        for i in range(PIECES):
            await asyncio.sleep(0.002)
            await send({**body, "body": _chunk(0, {"content": f" word{i}"})})
        usage = {"prompt_tokens": 9, "completion_tokens": PIECES, "total_tokens": 9 + PIECES}
        tail = _chunk(0, {}, "stop") + b"data: " + orjson.dumps(
            {"id": "chatcmpl-bench0", "object": "chat.completion.chunk", "created": 1,
             "model": "gpt-4o-mini", "choices": [], "usage": usage}
        ) + b"\n\ndata: [DONE]\n\n"  # fmt: skip
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    return app


def serve_upstream(port: int, first_ms: float) -> None:
    import uvicorn

    uvicorn.run(upstream_app(first_ms), host="127.0.0.1", port=port, log_level="warning")


# --- the measurement -----------------------------------------------------------------------


@contextmanager
def _process(args: list[str], env: dict[str, str], cwd: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        args, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _wait_up(url: str, deadline: float) -> None:
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                await client.get(url, timeout=0.5)
                return
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


async def _ttfb(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> tuple[float, str]:
    """Seconds to the first `data:` line, and the X-Cache header (after reading it all)."""
    start = time.perf_counter()
    first = 0.0
    async with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        async for piece in response.aiter_bytes():
            if not first and b"data:" in piece:
                first = time.perf_counter() - start
        return first, response.headers.get("x-cache", "-")


PATH = "/v1/chat/completions"  # `--api responses`: /v1/responses


def _body(prompt: str) -> dict[str, Any]:
    if PATH.endswith("/responses"):
        return {"model": "gpt-4o-mini", "stream": True, "input": prompt}
    return {
        "model": "gpt-4o-mini",
        "stream": True,
        "messages": [{"role": "user", "content": prompt}],
    }


async def measure(upstream: str, gateway: str, requests: int, deadline: float) -> dict[str, Any]:
    results: dict[str, list[float]] = {"provider direct": [], "gateway miss": [], "gateway hit": []}
    statuses: dict[str, set[str]] = {k: set() for k in results}
    async with httpx.AsyncClient(timeout=10) as client:
        await _ttfb(client, gateway + PATH, _body("warm-up"))
        await _ttfb(client, upstream + PATH, _body("warm-up"))
        run = f"{time.time_ns()}"
        for i in range(requests):
            if time.monotonic() > deadline:
                break
            prompt = f"bench {run} {i}"
            plan = [
                ("provider direct", upstream, prompt),
                ("gateway miss", gateway, prompt),
                ("gateway hit", gateway, prompt),
            ]
            for name, base, text in plan:
                seconds, status = await _ttfb(client, base + PATH, _body(text))
                results[name].append(seconds * 1000)
                statuses[name].add(status)
    return {"ms": results, "x-cache": statuses}


def _table(report: dict[str, Any]) -> str:
    lines = [f"{'path':<16} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8}  X-Cache"]
    for name, values in report["ms"].items():
        if not values:
            continue
        ordered = sorted(values)
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
        cache = ",".join(sorted(report["x-cache"][name]))
        lines.append(
            f"{name:<16} {len(values):>4} {statistics.median(values):>8.2f} {p95:>8.2f} "
            f"{statistics.fmean(values):>8.2f}  {cache}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=30, help="requests per path")
    parser.add_argument("--first-ms", type=float, default=50.0, help="upstream time to first chunk")
    parser.add_argument("--api", choices=("chat", "responses"), default="chat")
    parser.add_argument("--upstream", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    global PATH
    PATH = "/v1/responses" if args.api == "responses" else "/v1/chat/completions"
    if args.upstream:
        serve_upstream(args.upstream, args.first_ms)
        return
    deadline = time.monotonic() + DEADLINE_S
    up_port, gw_port = free_port(), free_port()
    upstream, gateway = f"http://127.0.0.1:{up_port}", f"http://127.0.0.1:{gw_port}"
    env = {
        k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CACHE_BACKEND", "PROVIDER")
    }
    env.update(
        OPENAI_API_KEY="sk-bench",
        OPENAI_BASE_URL=upstream + "/v1",
        PROVIDER="openai",
        LOG_LEVEL="WARNING",
    )
    with tempfile.TemporaryDirectory() as cwd:  # no stray .env is read
        me = [sys.executable, "-m", "bench.stream_ttfb"]
        up_args = [*me, "--upstream", str(up_port), "--first-ms", str(args.first_ms)]
        gw_args = [sys.executable, "-m", "genai_api", "serve", "--port", str(gw_port)]
        env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")])
        with _process(up_args, env, cwd), _process(gw_args, env, cwd):
            asyncio.run(_wait_up(upstream + "/", deadline))
            asyncio.run(_wait_up(gateway + "/healthz", deadline))
            report = asyncio.run(measure(upstream, gateway, args.requests, deadline - 2))
    print(f"{args.api}: time to first chunk, upstream first chunk after {args.first_ms:g} ms")
    print(_table(report))


if __name__ == "__main__":
    main()
