"""The bench gateway with time stamps per stage of a miss, for `bench/trace_coalescing.py`.

Patches the pipeline, the leases and the notifier at import time (nothing in genai_api knows)
and records `time.monotonic()` (system-wide on Linux, so comparable across processes) per
request: ASGI entry, pipeline run start, lookup done, flight joined, answered, response sent;
per flight: claim done, provider call start/end, fill done; per waiter in another process:
each claim attempt and each doorbell. `GET /__trace` answers the records and clears them.

    python -m bench.traced_gateway --port 9400
"""

from __future__ import annotations

import argparse
import contextvars
import itertools
import os
import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

EVENTS: list[tuple[float, int, str]] = []
_rid: contextvars.ContextVar[int] = contextvars.ContextVar("rid", default=-1)
_ids = itertools.count()


def mark(name: str) -> None:
    EVENTS.append((time.monotonic(), _rid.get(), name))


def _patch() -> None:
    from genai_api.leases import notify
    from genai_api.leases import redis as lr
    from genai_api.pipeline import core as p

    def wrap(cls: Any, name: str, label: str | None = None) -> None:
        original = getattr(cls, name)
        label = label or name

        async def wrapped(*args: Any, **kwargs: Any) -> Any:
            mark(label + ":start")
            try:
                return await original(*args, **kwargs)
            finally:
                mark(label + ":end")

        setattr(cls, name, wrapped)

    wrap(p.Pipeline, "run")
    wrap(p.Pipeline, "_read")
    wrap(p.Pipeline, "_fill")
    wrap(p.Pipeline, "upstream")
    wrap(lr.RedisLeases, "claim")
    wrap(lr.RedisLeases, "_attempt")
    wrap(lr.RedisLeases, "fill", "leases_fill")
    wrap(notify.Watch, "wait", "watch_wait")

    answer = p.Pipeline._answer

    def answered(self: Any, call: Any, status: Any, entry: Any) -> Any:
        mark(f"answer:{status.value if hasattr(status, 'value') else status}")
        return answer(self, call, status, entry)

    p.Pipeline._answer = answered  # type: ignore[method-assign]

    deliver = notify.Notifier.deliver

    def delivered(self: Any, message: str) -> None:
        EVENTS.append((time.monotonic(), -2, "deliver"))
        deliver(self, message)

    notify.Notifier.deliver = delivered  # type: ignore[method-assign]

    join = p.Pipeline._join

    def joined(self: Any, call: Any, feed: Any) -> Any:
        result = join(self, call, feed)
        mark("join:" + ("leader" if result[1] else "follower"))
        return result

    p.Pipeline._join = joined  # type: ignore[method-assign]


def traced(app: ASGIApp) -> ASGIApp:
    async def probe(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/__trace":
            body = orjson.dumps({"pid": os.getpid(), "events": EVENTS})
            EVENTS.clear()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
            return
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        _rid.set(next(_ids))
        mark("asgi")

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                mark("resp_start")
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                mark("resp_sent")

        await app(scope, receive, sending)

    return probe


def create() -> ASGIApp:
    _patch()
    from bench.gateway_server import create_gateway

    return traced(create_gateway())


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=9400)
    args = parser.parse_args()
    uvicorn.run(
        "bench.traced_gateway:create",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        access_log=False,
        log_config=None,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
