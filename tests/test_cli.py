"""The `genai-api` command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from genai_api.cli import MULTIPROC_ENV, build_parser, prometheus_multiproc_dir
from genai_api.settings import Settings
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent


def _run(cwd: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`genai-api ARGV` in `cwd` (no .env there) with only `env` configured."""
    base = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    base["PYTHONPATH"] = str(ROOT)  # this checkout's package, whatever the venv installed
    return subprocess.run(
        [sys.executable, "-m", "genai_api", *argv],
        cwd=cwd,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_lists_every_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "genai_api", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("serve", "warm", "stats"):
        assert command in out


def test_serve_arguments() -> None:
    args = build_parser().parse_args(
        ["serve", "--host", "0.0.0.0", "--port", "9000", "--workers", "3"]
    )
    assert (args.host, args.port, args.workers) == ("0.0.0.0", 9000, 3)


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--workers", "0"],
        ["serve", "--workers", "-2"],
        ["serve", "--port", "0"],
        ["serve", "--port", "70000"],
        ["warm", "f.jsonl", "--concurrency", "0"],
    ],
)
def test_counts_below_one_and_impossible_ports_are_usage_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    assert "must be" in capsys.readouterr().err


def test_unknown_command_exits_with_usage() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["frobnicate"])


def test_several_workers_get_a_fresh_metrics_dir_removed_afterwards(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with prometheus_multiproc_dir(2) as path:
        assert path is not None and os.path.isdir(path)
        assert os.environ[MULTIPROC_ENV] == path
    assert not os.path.exists(path)
    assert MULTIPROC_ENV not in os.environ


def test_one_worker_or_an_operator_dir_is_left_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with prometheus_multiproc_dir(1) as path:
        assert path is None and MULTIPROC_ENV not in os.environ
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    with prometheus_multiproc_dir(4) as path:
        assert path == str(tmp_path)
    assert tmp_path.is_dir()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_with_bad_variables_prints_a_line_each_and_exits_2(
    tmp_path: Path, workers: str
) -> None:
    port = str(free_port())
    done = _run(
        tmp_path, "serve", "--port", port, "--workers", workers, CACHE_BACKEND="foo", REDIS_PORT="x"
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "genai-api: CACHE_BACKEND: must be 'memory' or 'redis' (got 'foo')",
        "genai-api: REDIS_PORT: must be a whole number (got 'x')",
    ]  # once, from the parent: no traceback, no worker started
    assert done.stdout == ""


def test_serve_refuses_any_origin_on_a_gateway_that_needs_keys(tmp_path: Path) -> None:
    port = str(free_port())
    done = _run(tmp_path, "serve", "--port", port, CORS_ALLOW_ORIGINS="*", GATEWAY_API_KEYS="key-a")
    assert done.returncode == 2
    assert done.stderr == (
        "genai-api: CORS_ALLOW_ORIGINS: '*' is allowed only when GATEWAY_API_KEYS is unset; "
        "name the origins (got '*')\n"
    )


def test_serve_never_prints_a_bad_redis_url_password(tmp_path: Path) -> None:
    port = str(free_port())
    done = _run(
        tmp_path, "serve", "--port", port, CACHE_BACKEND="redis", REDIS_URL="http://:hunter2@r"
    )
    assert done.returncode == 2
    assert done.stderr.startswith("genai-api: REDIS_URL: ")
    assert "hunter2" not in done.stderr


def test_serve_with_a_missing_models_file_exits_2_before_any_worker_starts(
    tmp_path: Path,
) -> None:
    port = str(free_port())
    done = _run(tmp_path, "serve", "--port", port, "--workers", "2", MODELS_FILE="absent.toml")
    assert done.returncode == 2
    assert done.stderr == (
        "genai-api: MODELS_FILE absent.toml: cannot be read: No such file or directory\n"
    )  # not a traceback and "Application startup failed" from each worker


def test_serve_refuses_a_models_file_with_bad_values_naming_file_model_and_field(
    tmp_path: Path,
) -> None:
    (tmp_path / "models.toml").write_text(
        'closed = "false"\n[models."gpt-4o-mini"]\ninput_per_million = "-5"\nttll = 60\n'
    )
    port = str(free_port())
    done = _run(tmp_path, "serve", "--port", port, MODELS_FILE="models.toml")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "genai-api: MODELS_FILE models.toml: closed: must be true or false, unquoted (got 'false')",
        "genai-api: MODELS_FILE models.toml: model 'gpt-4o-mini': input_per_million: must be a "
        "number >= 0, in USD per 1M tokens, e.g. \"0.15\" (got '-5')",
        "genai-api: MODELS_FILE models.toml: model 'gpt-4o-mini': unknown key 'ttll' "
        "(did you mean 'ttl'?)",
    ]


def test_serve_refuses_an_upstream_whose_key_variable_is_not_set(tmp_path: Path) -> None:
    (tmp_path / "models.toml").write_text(
        '[models.llama]\nbase_url = "http://vllm:8000/v1"\napi_key_env = "ABSENT_VLLM_KEY"\n'
    )
    port = str(free_port())
    done = _run(tmp_path, "serve", "--port", port, MODELS_FILE="models.toml")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "genai-api: MODELS_FILE models.toml: model 'llama': api_key_env: the variable "
        "ABSENT_VLLM_KEY is not set",
    ]


def test_serve_refuses_a_fallback_cycle(tmp_path: Path) -> None:
    (tmp_path / "models.toml").write_text(
        '[models.a]\nfallbacks = ["b"]\n[models.b]\nfallbacks = ["a"]\n'
    )
    port = str(free_port())
    done = _run(tmp_path, "serve", "--port", port, MODELS_FILE="models.toml")
    assert done.returncode == 2
    assert done.stderr == (
        "genai-api: MODELS_FILE models.toml: model 'a': fallbacks: a cycle (a -> b -> a)\n"
    )


def test_serve_refuses_a_semantic_index_server_without_the_query_engine(tmp_path: Path) -> None:
    from tests.search_server import SearchServer, require_search, search_binaries

    if search_binaries() is None:
        require_search()
    plain = SearchServer(tmp_path, module=False).start()
    try:
        models = tmp_path / "models.toml"
        models.write_text(
            '[models."gpt-4o-mini"]\nsemantic = { embedding_model = "text-embedding-3-small" }\n'
        )
        done = _run(
            tmp_path,
            "serve",
            "--port",
            str(free_port()),
            MODELS_FILE=str(models),
            SEMANTIC_REDIS_URL=plain.url,
        )
    finally:
        plain.stop()
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("genai-api: SEMANTIC_REDIS_URL: the server has no query engine")
