"""Liveness and readiness probes."""

from __future__ import annotations

from tests.conftest import make_settings, running


async def test_healthz_and_readyz_with_memory_backend() -> None:
    async with running(make_settings()) as gw:
        health = await gw.http.get("/healthz")
        ready = await gw.http.get("/readyz")
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200 and ready.json()["cache"] == "memory"
