"""The start-up check: a bad variable is one line naming it and its value, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from genai_api.errors import ConfigError
from genai_api.settings import Settings, addresses
from genai_api.startup import load_config


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def _problems(monkeypatch: pytest.MonkeyPatch, **env: str) -> tuple[str, ...]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_config()
    return caught.value.problems


@pytest.mark.parametrize(
    ("variable", "value", "line"),
    [
        ("CACHE_BACKEND", "foo", "CACHE_BACKEND: must be 'memory' or 'redis' (got 'foo')"),
        ("REDIS_PORT", "abc", "REDIS_PORT: must be a whole number (got 'abc')"),
        ("REDIS_PORT", "70000", "REDIS_PORT: must be at most 65535 (got '70000')"),
        ("CACHE_DEFAULT_TTL", "-1", "CACHE_DEFAULT_TTL: must be at least 1 (got '-1')"),
        ("MAX_REQUEST_BYTES", "10", "MAX_REQUEST_BYTES: must be at least 1024 (got '10')"),
        ("UPSTREAM_TIMEOUT", "0", "UPSTREAM_TIMEOUT: must be more than 0 (got '0')"),
        ("LEASE_SECONDS", "31", "LEASE_SECONDS: must be at most 30 (got '31')"),
        (
            "LOG_LEVEL",
            "LOUD",
            "LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, in any case "
            "(got 'LOUD')",
        ),
        ("CACHE_NONDETERMINISTIC", "maybe", "CACHE_NONDETERMINISTIC: must be true or false"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT: must be 'text' or 'json' (got 'xml')"),
        (
            "CACHE_NAMESPACE",
            "a:b",
            "CACHE_NAMESPACE: may hold only letters, digits, '_', '.' and '-' (got 'a:b')",
        ),
    ],
)
def test_a_bad_variable_is_one_line_naming_it_and_its_value(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, line: str
) -> None:
    (problem,) = _problems(monkeypatch, **{variable: value})
    assert problem.startswith(line)


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"CACHE_DEFAULT_TTL": "7200", "CACHE_MAX_TTL": "3600"},
            "CACHE_DEFAULT_TTL: must be at most CACHE_MAX_TTL (3600) (got '7200')",
        ),
        (
            {"CACHE_DEFAULT_TTL": "2592001"},  # above the bound's default
            "CACHE_DEFAULT_TTL: must be at most CACHE_MAX_TTL (2592000) (got '2592001')",
        ),
        (
            {"CORS_ALLOW_ORIGINS": "*", "GATEWAY_API_KEYS": "key-a"},
            "CORS_ALLOW_ORIGINS: '*' is allowed only when GATEWAY_API_KEYS is unset; name the "
            "origins (got '*')",
        ),
        (
            {"CORS_ALLOW_ORIGINS": "https://chat.example, https://app.example/"},
            "CORS_ALLOW_ORIGINS: 'https://app.example/' is not an origin: scheme://host[:port], "
            "with no path or trailing slash",
        ),
        (
            {"OPENAI_BASE_URL": "localhost:8000/v1"},
            "OPENAI_BASE_URL: must be an http:// or https:// URL (got 'localhost:8000/v1')",
        ),
    ],
    ids=["ttl-over-bound", "ttl-over-default-bound", "cors-any-with-keys", "cors-path", "base-url"],
)
def test_contradicting_or_unusable_variables_are_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], line: str
) -> None:
    (problem,) = _problems(monkeypatch, **env)
    assert problem.startswith(line)


def test_an_admin_key_that_is_also_a_client_key_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    problems = _problems(monkeypatch, GATEWAY_API_KEYS="key-a,key-b", ADMIN_API_KEY="key-b")
    assert problems == ("ADMIN_API_KEY: must not be one of GATEWAY_API_KEYS",)


@pytest.mark.parametrize(
    ("env", "origins"),
    [
        ({}, ()),
        ({"CORS_ALLOW_ORIGINS": ""}, ()),  # as copied from .env.example
        ({"CORS_ALLOW_ORIGINS": "*"}, ("*",)),  # an open gateway
        (
            {"CORS_ALLOW_ORIGINS": " http://127.0.0.1:5173 ,https://[::1]:8443,",
             "GATEWAY_API_KEYS": "k"},
            ("http://127.0.0.1:5173", "https://[::1]:8443"),
        ),
    ],
)  # fmt: skip
def test_cors_origins_are_read_as_a_list(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], origins: tuple[str, ...]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert load_config().cors_origins == origins


def test_an_empty_base_url_is_the_sdk_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "")  # as copied from .env.example
    assert load_config().openai_base_url is None


def test_every_bad_variable_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    problems = _problems(monkeypatch, CACHE_BACKEND="foo", REDIS_PORT="abc")
    assert [p.split(":")[0] for p in problems] == ["CACHE_BACKEND", "REDIS_PORT"]


def test_a_bad_variable_in_dotenv_is_named_the_same(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("UPSTREAM_TIMEOUT=soon\n")
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert caught.value.problems == ("UPSTREAM_TIMEOUT: must be a number (got 'soon')",)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://user:hunter2@redis:6379/0", "schemes (redis://, rediss://, unix://)"),
        ("redis://:hunter2@redis:port/0", "Port could not be cast to integer"),
    ],
)
def test_a_bad_redis_url_is_refused_without_its_password(
    monkeypatch: pytest.MonkeyPatch, url: str, problem: str
) -> None:
    (line,) = _problems(monkeypatch, REDIS_URL=url)
    assert line.startswith("REDIS_URL: ") and problem in line
    assert "hunter2" not in line


def test_gateway_keys_of_commas_only_are_refused_not_an_open_gateway(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (line,) = _problems(monkeypatch, GATEWAY_API_KEYS=" , ,")
    assert line.startswith("GATEWAY_API_KEYS: holds commas but no key")


@pytest.mark.parametrize(("raw", "keys"), [("", ()), (" key-a , ,key-b ", ("key-a", "key-b"))])
def test_gateway_keys_empty_or_with_stray_commas_are_read(
    monkeypatch: pytest.MonkeyPatch, raw: str, keys: tuple[str, ...]
) -> None:
    monkeypatch.setenv("GATEWAY_API_KEYS", raw)
    assert load_config().client_keys == keys


def test_an_empty_redis_url_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "")  # as copied from .env.example: the parts are used
    assert load_config().redis_port == 6379


def test_a_models_file_problem_is_named_by_its_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (problem,) = _problems(monkeypatch, MODELS_FILE=str(tmp_path / "absent.toml"))
    assert problem == f"MODELS_FILE {tmp_path / 'absent.toml'}: cannot be read: " + (
        "No such file or directory"
    )


def test_a_broken_prompt_template_is_named_by_its_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "bad.toml").write_text("name =\n")
    (problem,) = _problems(monkeypatch, PROMPTS_DIR=str(tmp_path))
    assert problem.startswith(f"PROMPTS_DIR prompt template {tmp_path / 'bad.toml'}: ")


def test_a_long_bad_value_is_cut_short(monkeypatch: pytest.MonkeyPatch) -> None:
    (problem,) = _problems(monkeypatch, REDIS_PORT="x" * 200)
    assert problem == f"REDIS_PORT: must be a whole number (got '{'x' * 39}...)"


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"REDIS_MODE": "ring"},
            "REDIS_MODE: must be 'standalone', 'cluster' or 'sentinel' (got 'ring')",
        ),
        (
            {"REDIS_MODE": "sentinel"},
            "REDIS_SENTINELS: REDIS_MODE=sentinel needs the sentinels, as host:port,host:port",
        ),
        (
            {"REDIS_MODE": "sentinel", "REDIS_SENTINELS": "10.0.0.1:26379,10.0.0.2"},
            "REDIS_SENTINELS: '10.0.0.2' is not host:port (a comma-separated list of them)",
        ),
        (
            {"REDIS_MODE": "cluster", "REDIS_CLUSTER_NODES": "10.0.0.1:70000"},
            "REDIS_CLUSTER_NODES: '10.0.0.1:70000' is not host:port",
        ),
        (
            {"REDIS_CLUSTER_NODES": "10.0.0.1:7000"},
            "REDIS_CLUSTER_NODES: is for REDIS_MODE=cluster only",
        ),
        (
            {"REDIS_MODE": "cluster", "REDIS_URL": "redis://:hunter2@10.0.0.1:7000/3"},
            "REDIS_URL: a cluster has database 0 only: end the URL with /0",
        ),
        (
            {"REDIS_MODE": "cluster", "REDIS_DB": "2"},
            "REDIS_DB: must be 0 with REDIS_MODE=cluster (a cluster has database 0 only) (got '2')",
        ),
        (
            {"REDIS_MODE": "sentinel", "REDIS_SENTINELS": "s:1", "REDIS_SENTINEL_MASTER": ""},
            "REDIS_SENTINEL_MASTER: must not be empty",
        ),
    ],
)
def test_a_bad_topology_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], line: str
) -> None:
    (problem,) = _problems(monkeypatch, **env)
    assert problem.startswith(line)
    assert "hunter2" not in problem


def test_each_topology_reads_what_it_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_MODE", "Sentinel")
    monkeypatch.setenv("REDIS_SENTINELS", " 10.0.0.1:26379 , [::1]:26380 ")
    settings = load_config()
    assert (settings.redis_mode, settings.redis_sentinels) == (
        "sentinel",
        "10.0.0.1:26379,[::1]:26380",
    )
    assert addresses(settings.redis_sentinels) == [("10.0.0.1", 26379), ("::1", 26380)]
    assert settings.redis_sentinel_master == "mymaster" and not settings.cluster
    monkeypatch.setenv("REDIS_MODE", "cluster")
    monkeypatch.setenv("CACHE_BACKEND", "redis")
    monkeypatch.setenv("REDIS_CLUSTER_NODES", "10.0.0.2:7000,10.0.0.3:7000")
    assert load_config().cluster  # storage keys carry hash tags
