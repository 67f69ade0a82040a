"""`genai-api warm FILE.jsonl`: fill the cache from an OpenAI batch file before traffic comes.

In-process (the default) the lines go through the app itself, built by `create_app` from
the same `Settings` the server reads (environment and `.env`), over an ASGI transport:
the very routes, pipeline, keys and store the server uses, so what is warmed is what the
server then answers as HIT. With `--url` they go to a running server over HTTP instead.
Lines already cached come back as hits, so an interrupted warm-up is simply run again.
`CACHE_WARM_FILE` runs the same thing in the background when the server starts
(`genai_api.warming.runner`, which this command drives).

    genai-api warm requests.jsonl --concurrency 16
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from genai_api.app import create_app
from genai_api.errors import ConfigError
from genai_api.models.table import ModelTable
from genai_api.settings import Settings
from genai_api.startup import load_config, report
from genai_api.warming.batch_file import WarmSummary
from genai_api.warming.runner import count_lines, warm_app, warm_lines

WARM_REDIS_TIMEOUT = 2.0  # seconds per Redis operation during an in-process warm-up


class BackendDown(Exception):
    """In-process, the cache backend does not answer: every line would call the provider (and
    be paid for) and store nothing, so none is run."""


async def warm_in_process(settings: Settings, path: Path, **kwargs: Any) -> WarmSummary:
    """Build the server's app from `settings`, run its lifespan, and warm through it; raises
    `BackendDown` before any line when its cache backend does not answer."""
    # A warm-up is a batch job: a Redis answer that takes longer than the server's latency
    # budget is still worth waiting for, because a bypassed line is a line not warmed.
    update: dict[str, Any] = {
        "cache_warm_file": None,
        "redis_timeout": max(settings.redis_timeout, WARM_REDIS_TIMEOUT),
    }
    app = create_app(settings.model_copy(update=update))
    async with app.router.lifespan_context(app):
        store = app.state.gateway.store
        if not await store.ping():
            reason = store.last_failure or "no reason given"
            raise BackendDown(f"the cache backend ({store.name}) is not answering: {reason}")
        return await warm_app(app, path, **kwargs)


async def warm_remote(settings: Settings, url: str, path: Path, **kwargs: Any) -> WarmSummary:
    """Warm through a running server; misses are priced with this side's models table."""
    timeout = httpx.Timeout(settings.upstream_timeout + 30, connect=10)
    async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=timeout) as client:
        return await warm_lines(
            path, client, models=ModelTable.load(settings.models_file), **kwargs
        )


def warm_main(
    file: str, url: str | None = None, concurrency: int = 8, api_key: str | None = None
) -> int:
    """The CLI: 0 when every line was stored or already cached, 1 when some failed or were
    not stored (BYPASS), 2 when nothing could run (the file, the configuration, or, in-process,
    a cache backend that does not answer)."""
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
            try:
                summary = asyncio.run(warm_in_process(settings, path, **kwargs))
            except BackendDown as exc:
                err.print(f"[red]{exc}; nothing would be stored, so no line was run[/red]")
                return 2
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
    # A warm-up's job is to store: a line that was not stored is a line that failed.
    return 1 if summary.errors or summary.bypassed else 0
