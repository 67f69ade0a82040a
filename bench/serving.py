"""What every bench server shares: uvicorn at its fastest, and a raw-ASGI JSON answer."""

from __future__ import annotations

from starlette.types import ASGIApp, Send

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
    )


async def send_bytes(send: Send, status: int, body: bytes, *extra: tuple[bytes, bytes]) -> None:
    """One complete response with `body` as JSON and any `extra` headers."""
    headers = [JSON, *extra, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
