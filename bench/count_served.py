"""Instructions per chat cache hit as `serve` answers it: server protocol and app, callgrind.

`bench.count_hit` counts the app alone (an ASGI call); this counts what a served worker does
for a hit but the socket's system calls: raw request bytes into `genai-api serve`'s protocol
(`BoundedHttpToolsProtocol`, its one-write transport over one that only collects, see
`bench.protocol_driver`), the bench's task probe and the app as `serve` builds it
(`worker_app`: logging set up, memory store, mock provider), and the answer framed. Counts
are repeatable to a few hundred instructions, where timings on a shared machine are not.

    python -m bench.count_served               # needs valgrind; ~1 minute
    LOG_LEVEL=WARNING python -m bench.count_served -n 2000
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
from pathlib import Path

from bench.count_hit import _dump, _total, callgrind_child


async def _child(n: int) -> None:
    os.environ.update(
        PROVIDER="mock",
        CACHE_BACKEND="memory",
        LOG_LEVEL=os.environ.get("LOG_LEVEL", "INFO"),
        GATEWAY_API_KEYS="bench-key",
    )
    from bench.gateway_server import create_gateway, with_task_probe
    from bench.profile_hit import raw_request
    from bench.protocol_driver import ProtocolDriver
    from genai_api.http.bounded_protocol import BoundedHttpToolsProtocol

    app = create_gateway()
    async with app.router.lifespan_context(app):
        served = await ProtocolDriver.start(BoundedHttpToolsProtocol, with_task_probe(app))
        raw = raw_request()
        for _ in range(300):  # the first is a miss; then everything built lazily is built
            await served.request(raw)
        gc.collect()
        gc.freeze()
        _dump()
        for _ in range(n):
            await served.request(raw)
        _dump()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=1000, help="hits counted")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import uvloop

        uvloop.run(_child(args.n))
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = callgrind_child("bench.count_served", args.n, Path(tmp))
        # Part 1 is start-up and warm-up, part 2 the hits.
        level = os.environ.get("LOG_LEVEL", "INFO")
        per_hit = _total(Path(f"{out}.2")) / args.n
        print(f"a served chat cache hit (LOG_LEVEL={level}): {per_hit:,.0f} instructions")


if __name__ == "__main__":
    main()
