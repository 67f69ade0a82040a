"""`rediss://` connections that share one SSL context per pool.

redis-py builds a fresh `ssl.create_default_context()` for every new connection, which
loads the system CA store: ~140 ms of blocked event loop each time, so a cold pool meeting
a burst of requests stalls the worker for seconds and trips the Redis timeouts. Sharing the
first connection's context (the settings are the pool's, hence identical) costs it once.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import RedisSSLContext


def shared_context_ssl_connection() -> type[aioredis.SSLConnection]:
    """An `SSLConnection` class for one pool: its connections share one SSL context."""
    shared: list[RedisSSLContext] = []

    class SharedContextSSLConnection(aioredis.SSLConnection):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            if shared:
                self.ssl_context = shared[0]
            else:
                shared.append(self.ssl_context)

    return SharedContextSSLConnection
