"""The test harness's own promise: under CI=true a missing Redis fails instead of skipping."""

from __future__ import annotations

import pytest

from tests.redis_server import require_redis


def test_missing_redis_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no redis-server"):
        require_redis()


def test_missing_redis_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require_redis()
