"""What a served worker's app holds for the life of the process."""

from __future__ import annotations

import gc

import pytest

from genai_api.cli import worker_app


def test_a_served_worker_freezes_its_startup_objects_out_of_collections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    assert gc.get_freeze_count() == 0
    try:
        worker_app()
        assert gc.get_freeze_count() > 100_000  # the modules, not just a handful
    finally:
        gc.unfreeze()


def test_a_served_worker_keeps_freed_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    monkeypatch.setattr("genai_api.malloc.keep_freed_memory", lambda: calls.append("set") or True)
    try:
        worker_app()
    finally:
        gc.unfreeze()
    assert calls == ["set"]
