"""What a starting gateway tells the operator: the provider and why, why Redis is not answering."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.conftest import make_settings, running
from tests.redis_server import RedisServer, free_port


async def _start_up_log(caplog: pytest.LogCaptureFixture, **settings: object) -> list[str]:
    with caplog.at_level(logging.INFO, logger="genai_api"):
        async with running(make_settings(**settings)):
            pass
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def test_mock_without_a_key_says_no_key_is_set(caplog: pytest.LogCaptureFixture) -> None:
    warnings = await _start_up_log(caplog, provider=None, openai_api_key=None)
    assert "provider: mock (offline, deterministic answers) - no OPENAI_API_KEY set" in warnings


async def test_mock_chosen_by_provider_says_so_though_a_key_is_set(
    caplog: pytest.LogCaptureFixture,
) -> None:
    warnings = await _start_up_log(caplog, provider="mock", openai_api_key="sk-real-key")
    assert "provider: mock (offline, deterministic answers) - chosen by PROVIDER" in warnings
    assert not any("no OPENAI_API_KEY" in w for w in warnings)


async def test_openai_without_a_key_starts_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    warnings = await _start_up_log(caplog, provider="openai", openai_api_key=None)
    assert any(
        w.startswith("provider: openai chosen by PROVIDER, but no OPENAI_API_KEY") for w in warnings
    )


async def test_openai_with_a_key_starts_without_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert not [w for w in await _start_up_log(caplog) if w.startswith("provider")]


async def test_a_prompts_dir_that_is_not_a_directory_is_a_warning(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    warnings = await _start_up_log(caplog, prompts_dir=tmp_path / "promtps")
    assert f"prompts: none - PROMPTS_DIR {tmp_path / 'promtps'} is not a directory" in warnings


async def test_a_prompts_dir_that_exists_is_no_warning(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    warnings = await _start_up_log(caplog, prompts_dir=tmp_path)
    assert not any(w.startswith("prompts:") for w in warnings)


@pytest.mark.parametrize("password", ["wrong-pass", None])
async def test_a_redis_refusing_the_password_is_reported_with_its_own_reason(
    caplog: pytest.LogCaptureFixture, tmp_path: Path, redis_binary: None, password: str | None
) -> None:
    server = RedisServer(tmp_path, password="right-pass").start()
    try:
        auth = f":{password}@" if password else ""
        url = f"redis://{auth}127.0.0.1:{server.port}/0"
        warnings = await _start_up_log(caplog, cache_backend="redis", redis_url=url)
    finally:
        server.stop()
    (line,) = [w for w in warnings if w.startswith("cache backend redis is not answering")]
    assert "(AuthenticationError: " in line and "check REDIS_PASSWORD" in line
    assert "wrong-pass" not in line and "right-pass" not in line


async def test_a_redis_nobody_listens_on_is_reported_with_the_connection_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    warnings = await _start_up_log(caplog, cache_backend="redis", redis_url=url)
    (line,) = [w for w in warnings if w.startswith("cache backend redis is not answering")]
    assert "ConnectionError" in line and "requests will bypass it" in line
