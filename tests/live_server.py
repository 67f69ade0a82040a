"""A live `genai-api serve` with the offline mock provider, for tests that need real sockets
(a browser, several workers): `tests.processes.gateway` with a known configuration."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.processes import gateway

# Whatever the developer's environment or .env says, these servers are offline and open.
_BASE = {
    "PROVIDER": "mock",
    "CACHE_BACKEND": "memory",
    "ADMIN_API_KEY": "",
    "GATEWAY_API_KEYS": "",
    "METRICS_REQUIRE_ADMIN": "false",
}


@contextmanager
def live_server(cwd: Path, env: Mapping[str, str] | None = None, workers: int = 1) -> Iterator[str]:
    """Start the server in `cwd`; yield its base URL; stop it and its workers."""
    service = gateway(cwd, {**_BASE, **(env or {})}, workers=workers)
    try:
        service.wait_ready(timeout=60)
        yield service.url
    finally:
        service.stop()
