"""The `genai-api` command line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from genai_api.cli import build_parser


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
