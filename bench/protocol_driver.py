"""uvicorn's HTTP protocol driven in-process: what the server adds to each request, socket aside.

`profile_hit` times ASGI apps through a minimal driver; this feeds raw request bytes to a
uvicorn protocol instance (the one `genai-api serve` runs, or plain httptools) over a
transport that only collects what is written, and waits for the answer's last byte. So the
parsing, the scope, the request/response cycle, its task and the response framing are
counted, and the system calls are not (those are the same for every server on the machine).

    driver = await ProtocolDriver.start(BoundedHttpToolsProtocol, app)
    await driver.request(raw_request_bytes)       # one request, answered
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.server import ServerState


class _Transport(asyncio.Transport):
    """Collects writes; says an answer is complete when its body ends (content-length)."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.done: asyncio.Event = asyncio.Event()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += len(data)
        self.done.set()  # each answer here is written as head and body: the last write wakes

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None

    def close(self) -> None:
        return None

    def get_write_buffer_size(self) -> int:
        return 0


class ProtocolDriver:
    def __init__(self, protocol: asyncio.Protocol, transport: _Transport) -> None:
        self.protocol = protocol
        self.transport = transport

    @classmethod
    async def start(cls, protocol_class: type[Any], app: ASGIApp) -> ProtocolDriver:
        config = uvicorn.Config(app, loop="none", access_log=False, log_config=None, lifespan="off")
        config.load()
        protocol = protocol_class(
            config=config,
            server_state=ServerState(),
            app_state={},
            _loop=asyncio.get_running_loop(),
        )
        transport = _Transport()
        protocol.connection_made(transport)
        return cls(protocol, transport)

    async def request(self, raw: bytes) -> None:
        """Feed one whole request and wait until the app's answer is complete."""
        transport = self.transport
        cycle_done = transport.done
        cycle_done.clear()
        self.protocol.data_received(raw)
        while True:
            await cycle_done.wait()
            cycle = getattr(self.protocol, "cycle", None)
            if cycle is None or cycle.response_complete:
                return
            cycle_done.clear()


async def trivial_app(scope: Any, receive: Any, send: Any) -> None:
    """The least an ASGI app can answer: reads the body, sends 2 bytes."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"{}"})
