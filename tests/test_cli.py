"""The `genai-api` command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from genai_api.cli import MULTIPROC_ENV, build_parser, prometheus_multiproc_dir


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
