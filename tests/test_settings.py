"""Settings: defaults, environment, `.env`, and `.env.example` kept in step with the class."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from genai_api.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_match_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.cache_backend == "memory"
    assert (s.redis_host, s.redis_port, s.redis_db) == ("localhost", 6379, 0)
    assert s.cache_namespace == "genai"
    assert (s.cache_default_ttl, s.cache_max_ttl) == (3600, 2592000)
    assert s.cache_nondeterministic is True
    assert s.cache_scope == "tenant"
    assert s.resolved_provider == "mock"
    assert s.upstream_concurrency == 64 and s.upstream_timeout == 120
    assert s.client_keys == ()
    assert s.cors_origins == ()  # CORS off
    assert s.max_request_bytes == 8388608
    assert s.prompts_dir == Path("prompts")


def test_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("CACHE_BACKEND=local\nOPENAI_API_KEY=sk-x\nGATEWAY_API_KEYS= a , b,,\n")
    monkeypatch.setenv("CACHE_NAMESPACE", "other")
    monkeypatch.delenv("PROVIDER", raising=False)
    s = Settings(_env_file=env_file)  # type: ignore[call-arg]
    assert s.cache_backend == "memory"
    assert s.resolved_provider == "openai"
    assert s.client_keys == ("a", "b")
    assert s.cache_namespace == "other"


def test_env_example_lists_every_setting() -> None:
    text = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, flags=re.M))
    assert listed == {name.upper() for name in Settings.model_fields}


def test_a_pool_too_small_for_the_subscriptions_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two pooled connections are held for good (lease wake-ups, L1 invalidations).
    from pydantic import ValidationError

    monkeypatch.setenv("REDIS_MAX_CONNECTIONS", "3")
    with pytest.raises(ValidationError, match="redis_max_connections"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("REDIS_MAX_CONNECTIONS", "4")
    assert Settings(_env_file=None).redis_max_connections == 4  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("CACHE_BACKEND", "Redis", "cache_backend", "redis"),
        ("CACHE_BACKEND", "LOCAL", "cache_backend", "memory"),
        ("PROVIDER", "Mock", "provider", "mock"),
        ("PROVIDER", " OpenAI ", "provider", "openai"),
        ("CACHE_SCOPE", "SHARED", "cache_scope", "shared"),
        ("UPSTREAM_HTTP_CLIENT", "HTTPX", "upstream_http_client", "httpx"),
    ],
)
def test_choices_are_read_in_any_case(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    assert getattr(Settings(_env_file=None), field) == expected  # type: ignore[call-arg]


def test_an_empty_provider_is_chosen_by_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVIDER", "")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    assert Settings(_env_file=None).resolved_provider == "openai"  # type: ignore[call-arg]


def test_log_format_is_text_unless_json_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).log_format == "text"  # type: ignore[call-arg]
    monkeypatch.setenv("LOG_FORMAT", " JSON")
    assert Settings(_env_file=None).log_format == "json"  # type: ignore[call-arg]


def test_log_level_is_a_level_name_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", " debug")
    assert Settings(_env_file=None).log_level == "DEBUG"  # type: ignore[call-arg]
