"""Sending an OpenAI batch file's lines through the gateway: the engine of `genai-api warm`
and of `CACHE_WARM_FILE` (a warm-up in the background when the server starts).

It takes a client (an ASGI transport over a started app, or HTTP to a running server), so
it never builds an app itself: the app starts it (`start_background_warm`) and the command
builds the app (`genai_api.commands.warm`), with the arrows pointing one way.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from genai_api.models.table import ModelTable
from genai_api.settings import Settings
from genai_api.warming.batch_file import BatchLine, LineError, WarmSummary, parse_line

log = logging.getLogger("genai_api.warm")

OnLine = Callable[[int, str | None], None]  # (line number, failure or None)
# The OpenAI `user` of warm-up lines that name none, one per line: nobody reads what warming
# stores, so neither the client who sends the same request next nor a second warm-up (or a
# repeated line) is repeating itself (a regenerate, `genai_api.pipeline.variants`), whichever key
# they use. `user` is not part of any key.
WARM_USER = "genai-api-warm-"


def warming(body: dict[str, Any]) -> dict[str, Any]:
    """A line's body as the warm-up sends it."""
    return body if "user" in body else {**body, "user": WARM_USER + secrets.token_hex(6)}


def _read(path: Path) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines as bytes: a line that is not UTF-8 is that line's error (`parse_line`),
    not the whole file's. A UTF-8 byte order mark (some editors write one) is not content."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            line = raw.removeprefix(b"\xef\xbb\xbf") if number == 1 else raw
            if line.strip():
                yield number, line


def count_lines(path: Path) -> int:
    """Non-blank lines, for the progress bar's total."""
    return sum(1 for _ in _read(path))


def _problem(response: httpx.Response) -> str:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:200]
    return f"HTTP {response.status_code}: {message}"


async def warm_lines(
    path: Path,
    client: httpx.AsyncClient,
    *,
    models: ModelTable,
    concurrency: int = 8,
    api_key: str | None = None,
    on_line: OnLine | None = None,
) -> WarmSummary:
    """Send every line of `path` through `client`, at most `concurrency` at a time."""
    summary = WarmSummary()
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue(maxsize=2 * concurrency)

    async def send(line: BatchLine) -> str | None:
        try:
            response = await client.post(line.url, json=warming(line.body), headers=headers)
        except httpx.HTTPError as exc:
            return f"request failed: {exc!r}"
        if response.status_code != 200:
            return _problem(response)
        summary.count(line, response, models)
        return None

    async def worker() -> None:
        while (item := await queue.get()) is not None:
            number, text = item
            try:
                problem = await send(parse_line(number, text))
            except LineError as exc:
                problem = str(exc)
            if problem is not None:
                summary.fail(number, problem)
            if on_line is not None:
                on_line(number, problem)

    async with asyncio.TaskGroup() as group:
        for _ in range(max(1, concurrency)):
            group.create_task(worker())
        for item in _read(path):
            await queue.put(item)
        for _ in range(max(1, concurrency)):
            await queue.put(None)
    return summary


async def warm_app(app: Any, path: Path, **kwargs: Any) -> WarmSummary:
    """Warm through a started app (its lifespan running) over an ASGI transport."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://warm", timeout=None) as c:
        return await warm_lines(path, c, models=app.state.gateway.models, **kwargs)


def start_background_warm(app: Any, settings: Settings) -> asyncio.Task[WarmSummary | None]:
    """`CACHE_WARM_FILE`: warm through the starting app without delaying its start-up."""
    assert settings.cache_warm_file is not None
    path = settings.cache_warm_file

    def on_line(number: int, problem: str | None) -> None:
        if problem is not None:
            log.warning("warm-up %s line %d: %s", path, number, problem)

    async def run() -> WarmSummary | None:
        try:
            summary = await warm_app(app, path, api_key=settings.command_key, on_line=on_line)
        except OSError as exc:
            log.error("warm-up: cannot read %s: %s", path, exc)
            return None
        except Exception:  # a background task: the server must keep serving
            log.exception("warm-up from %s failed", path)
            return None
        log.info("warm-up from %s done: %s", path, "; ".join(summary.report_lines(0)))
        return summary

    return asyncio.create_task(run(), name="cache-warm")
