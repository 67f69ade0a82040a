"""Liveness and readiness probes."""

from __future__ import annotations

from tests.conftest import make_settings, running


async def test_healthz_and_readyz_with_memory_backend() -> None:
    async with running(make_settings()) as gw:
        health = await gw.http.get("/healthz")
        ready = await gw.http.get("/readyz")
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200 and ready.json()["cache"] == "memory"


async def test_probes_answer_head_with_the_status_and_no_body() -> None:
    async with running(make_settings()) as gw:
        health = await gw.http.head("/healthz")
        ready = await gw.http.head("/readyz")
    assert (health.status_code, health.content) == (200, b"")
    assert (ready.status_code, ready.content) == (200, b"")
