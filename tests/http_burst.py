"""Many requests to a live server fast: a few keep-alive connections, raw HTTP/1.1.

httpx spends more CPU per request than the server does on a cache hit; ten thousand requests
through it would make a slow test of a fast path. This client writes each request and reads
its answer (status line, headers, `content-length` bytes) on plain asyncio streams.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping


async def burst(
    port: int,
    path: str,
    body: bytes,
    *,
    total: int,
    connections: int = 16,
    headers: Mapping[str, str] | None = None,
) -> dict[int, int]:
    """POST `body` to `path` `total` times over `connections` connections; count per status."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    request = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body
    counts: dict[int, int] = {}
    share, rest = divmod(total, connections)

    async def one(n: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(n):
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                counts[status] = counts.get(status, 0) + 1
        finally:
            writer.close()

    async with asyncio.timeout(120):
        await asyncio.gather(*(one(share + (i < rest)) for i in range(connections)))
    return counts
