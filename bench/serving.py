"""What every bench server shares: uvicorn at its fastest, the raw-ASGI lifespan, the body
read whole, and a raw-ASGI JSON answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Receive, Send

JSON = (b"content-type", b"application/json")


def serve(app: ASGIApp, host: str, port: int) -> None:
    """Run `app` the way the gateway is measured: uvloop, httptools, no access log."""
    import uvicorn

    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        # A request it holds on purpose (a fake upstream told to hang) must not hold its stop
        # for ever: the tests' stop waits 10 s for the process, then kills it.
        timeout_graceful_shutdown=1,
    )


async def send_bytes(send: Send, status: int, body: bytes, *extra: tuple[bytes, bytes]) -> None:
    """One complete response with `body` as JSON and any `extra` headers."""
    headers = [JSON, *extra, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def lifespan(
    receive: Receive,
    send: Send,
    startup: Callable[[], Awaitable[None]],
    shutdown: Callable[[], Awaitable[None]],
) -> None:
    """Answer the ASGI lifespan messages, running `startup` and `shutdown` in turn."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await startup()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive: Receive) -> bytes:
    """The request body, whole."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body
