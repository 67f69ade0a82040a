"""`genai-api warm FILE.jsonl`: fill the cache from an OpenAI batch file before traffic comes.

In-process (the default) the lines go through the app itself, built by `create_app` from
the same `Settings` the server reads (environment and `.env`), over an ASGI transport:
the very routes, pipeline, keys and store the server uses, so what is warmed is what the
server then answers as HIT. With `--url` they go to a running server over HTTP instead.
Lines already cached come back as hits, so an interrupted warm-up is simply run again.
`CACHE_WARM_FILE` runs the same thing in the background when the server starts.

    genai-api warm requests.jsonl --concurrency 16
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from genai_api.batch import BatchLine, LineError, WarmSummary, parse_line
from genai_api.errors import ConfigError
from genai_api.models_table import ModelTable
from genai_api.settings import Settings
from genai_api.startup import load_config, report

log = logging.getLogger("genai_api.warm")

WARM_REDIS_TIMEOUT = 2.0  # seconds per Redis operation during an in-process warm-up
OnLine = Callable[[int, str | None], None]  # (line number, failure or None)


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
            response = await client.post(line.url, json=line.body, headers=headers)
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


async def warm_in_process(settings: Settings, path: Path, **kwargs: Any) -> WarmSummary:
    """Build the server's app from `settings`, run its lifespan, and warm through it."""
    from genai_api.app import create_app  # the app imports this module for CACHE_WARM_FILE

    # A warm-up is a batch job: a Redis answer that takes longer than the server's latency
    # budget is still worth waiting for, because a bypassed line is a line not warmed.
    update: dict[str, Any] = {
        "cache_warm_file": None,
        "redis_timeout": max(settings.redis_timeout, WARM_REDIS_TIMEOUT),
    }
    app = create_app(settings.model_copy(update=update))
    async with app.router.lifespan_context(app):
        return await warm_app(app, path, **kwargs)


async def warm_remote(settings: Settings, url: str, path: Path, **kwargs: Any) -> WarmSummary:
    """Warm through a running server; misses are priced with this side's models table."""
    timeout = httpx.Timeout(settings.upstream_timeout + 30, connect=10)
    async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=timeout) as client:
        return await warm_lines(
            path, client, models=ModelTable.load(settings.models_file), **kwargs
        )


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


def warm_main(
    file: str, url: str | None = None, concurrency: int = 8, api_key: str | None = None
) -> int:
    """The CLI: 0 when every line went through, 1 when some failed, 2 when nothing could run."""
    out, err = Console(), Console(stderr=True)
    path = Path(file)
    try:
        settings = load_config()
    except ConfigError as exc:
        return report(exc)
    try:
        total = count_lines(path)
    except OSError as exc:
        err.print(f"[red]cannot read {file}: {exc}[/red]")
        return 2
    if not url and settings.cache_backend == "memory":
        err.print(
            "[yellow]CACHE_BACKEND=memory: entries warmed in-process vanish when this command "
            "ends. Use CACHE_BACKEND=redis (as the server does) or --url.[/yellow]"
        )
    progress = Progress(
        TextColumn("warming"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[failed]} failed"),
        console=err,
    )
    task = progress.add_task("warm", total=total, failed=0)
    failed = 0

    def on_line(number: int, problem: str | None) -> None:
        nonlocal failed
        if problem is not None:
            failed += 1
            progress.console.print(f"[red]line {number}: {problem}[/red]", highlight=False)
        progress.update(task, advance=1, failed=failed)

    kwargs: dict[str, Any] = {
        "concurrency": concurrency,
        "api_key": api_key or settings.command_key,  # whose entries to fill
        "on_line": on_line,
    }
    with progress:
        if url:
            summary = asyncio.run(warm_remote(settings, url, path, **kwargs))
        else:
            summary = asyncio.run(warm_in_process(settings, path, **kwargs))
    where = url or "in-process"
    out.print(f"warmed {path} ({where})", highlight=False)
    for text in summary.report_lines():
        out.print(text, highlight=False)
    if summary.bypassed:
        out.print(
            f"{summary.bypassed} line(s) bypassed the cache (not stored): check the backend "
            "(or CACHE_NONDETERMINISTIC) and run again; stored lines will be hits.",
            highlight=False,
        )
    return 1 if summary.errors else 0
