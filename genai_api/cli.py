"""The `genai-api` command: serve the API, warm the cache, print savings."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

DESCRIPTION = """\
genai-api - an OpenAI-compatible gateway with an exact, coalescing response cache.

Configuration comes from the environment and a .env file in the current directory
(see .env.example): CACHE_BACKEND, REDIS_URL, OPENAI_API_KEY, OPENAI_BASE_URL, ...
"""


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from genai_api.http.bounded_protocol import BoundedHttpToolsProtocol
    from genai_api.logs import setup_logging
    from genai_api.startup import load_config

    settings = load_config()  # here, once: a bad variable never reaches the workers
    setup_logging(settings.log_level, settings.log_format)
    with prometheus_multiproc_dir(args.workers):
        uvicorn.run(
            "genai_api.cli:worker_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            access_log=False,
            log_config=None,
            loop="uvloop",
            http=BoundedHttpToolsProtocol,  # httptools, with a bound on heads and read time
            timeout_graceful_shutdown=10,
        )
    return 0


def worker_app() -> Any:
    """The app of one uvicorn worker, with logging set up in the worker's own process.

    `--workers N` spawns fresh interpreters: without this their access log, format and
    secret redaction would be missing. It also freezes what the process holds by then
    (~150k objects, the modules mostly) out of the garbage collector: a full collection walks
    every one of them, ~75 ms of CPU on a 2.5 GHz core and a latency spike every few hundred
    requests; frozen, collections walk only what requests create. And it keeps freed memory
    for reuse (`genai_api.malloc`): without it, a large answer costs a page fault per 4 KiB.
    (Tests use `create_app`.)
    """
    import gc

    from genai_api.app import create_app
    from genai_api.logs import setup_logging
    from genai_api.malloc import keep_freed_memory
    from genai_api.startup import load_settings

    settings = load_settings()  # checked by `serve` already; this is the worker's own copy
    setup_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    keep_freed_memory()
    gc.freeze()
    return app


@contextlib.contextmanager
def prometheus_multiproc_dir(workers: int) -> Iterator[str | None]:
    """With several workers, a fresh PROMETHEUS_MULTIPROC_DIR for them, removed afterwards.

    prometheus-client reads the variable when it is first imported, so it is set here,
    before any worker process starts. An operator's own directory is used as it is.
    """
    existing = os.environ.get(MULTIPROC_ENV)
    if workers <= 1 or existing:
        yield existing
        return
    path = tempfile.mkdtemp(prefix="genai-api-metrics-")
    os.environ[MULTIPROC_ENV] = path
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)


def _stats(args: argparse.Namespace) -> int:
    from genai_api.commands.stats import print_stats
    from genai_api.startup import load_settings

    settings = load_settings()  # the server's configuration: the environment and `.env`
    admin = settings.admin_api_key.get_secret_value() if settings.admin_api_key else None
    # Without an admin key the server takes any client key for its admin endpoints.
    return print_stats(args.url, admin or settings.command_key)


def _warm(args: argparse.Namespace) -> int:
    from genai_api.commands.warm import warm_main

    return warm_main(args.file, url=args.url, concurrency=args.concurrency, api_key=args.api_key)


def _positive(text: str) -> int:
    """An integer of at least 1 (uvicorn quietly runs `--workers 0` as one worker)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _port(text: str) -> int:
    value = _positive(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number (1-65535), not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genai-api", description=DESCRIPTION, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the API server (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8000, help="port to bind (default 8000)")
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="worker processes; with CACHE_BACKEND=redis they share one cache (default 1)",
    )
    serve.set_defaults(func=_serve)

    warm = sub.add_parser(
        "warm",
        help="fill the cache from an OpenAI batch file (JSONL)",
        description="Run each line of an OpenAI batch file ({custom_id, method, url, body}) "
        "through the same pipeline as the server, in-process with the same configuration, "
        "or through a running server with --url. Lines already cached count as hits, so an "
        "interrupted warm-up can simply be run again.",
    )
    warm.add_argument("file", help="JSONL file in OpenAI batch format")
    warm.add_argument(
        "--url", help="send the lines to a running server instead, e.g. http://127.0.0.1:8000"
    )
    warm.add_argument(
        "--concurrency", type=_positive, default=8, help="requests in flight (default 8)"
    )
    warm.add_argument(
        "--api-key",
        help="client key to send (with CACHE_SCOPE=tenant, entries belong to that key); "
        "default: the first of GATEWAY_API_KEYS",
    )
    warm.set_defaults(func=_warm)

    stats = sub.add_parser(
        "stats",
        help="print the savings table of a running server",
        description="Reads /v1/cache/stats of a running server. The bearer is ADMIN_API_KEY "
        "when it is set, else the first of GATEWAY_API_KEYS (the server then takes any client "
        "key for its admin endpoints), read from the environment and .env as the server does.",
    )
    stats.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL")
    stats.set_defaults(func=_stats)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from genai_api.errors import ConfigError
    from genai_api.startup import report

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:  # one line per problem, exit 2: not a traceback
        return report(exc)


if __name__ == "__main__":
    sys.exit(main())
