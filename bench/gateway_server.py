"""The gateway as `genai-api serve` runs it, plus one probe the soak needs.

Same app (`genai_api.cli.worker_app`), same uvicorn options as the CLI (uvloop, httptools, no
access log from uvicorn), configured from the environment. The only addition is
`GET /__bench/tasks`, answered before the app sees the request, with the number of asyncio
tasks alive in the process (so the soak can tell whether requests leave tasks behind) and
the garbage collector's counters.

    python -m bench.gateway_server --port 9400
"""

from __future__ import annotations

import argparse
import asyncio
import gc

import orjson
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

PROBE = "/__bench/tasks"


def with_task_probe(app: ASGIApp) -> ASGIApp:
    async def probed(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == PROBE:
            current = asyncio.current_task()
            others = [t for t in asyncio.all_tasks() if t is not current]
            body = orjson.dumps(
                {
                    "tasks": len(others),
                    "names": sorted(t.get_name() for t in others),
                    "gc": gc.get_stats(),
                    "gc_frozen": gc.get_freeze_count(),
                }
            )
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    return probed


def create_gateway() -> FastAPI:
    """The gateway app exactly as `genai-api serve` builds it in each worker."""
    from genai_api.cli import worker_app

    app: FastAPI = worker_app()
    return app


def create() -> ASGIApp:
    return with_task_probe(create_gateway())


def main() -> None:
    import uvicorn

    from genai_api.http.bounded_protocol import BoundedHttpToolsProtocol

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9400)
    args = parser.parse_args()
    uvicorn.run(
        "bench.gateway_server:create",
        factory=True,
        host=args.host,
        port=args.port,
        access_log=False,
        log_config=None,
        loop="uvloop",
        http=BoundedHttpToolsProtocol,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
