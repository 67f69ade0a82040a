"""Where the models file's `api_key_env` variables are read: the environment, then `.env`.

The gateway's own settings come from both (CONTRACT §2), so an upstream key named in the
models file does too: a `VLLM_API_KEY=...` line in `.env` is found like `OPENAI_API_KEY=...`.
The environment wins, as it does for the settings. Only a variable's presence is ever
reported; its value is handed to the provider that sends it and to nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

ENV_FILE = Path(".env")


def environment(env_file: Path | None = ENV_FILE) -> Mapping[str, str]:
    """The variables an `api_key_env` may name: `.env`'s (when the file exists), overridden
    by the process environment's. Empty values count as unset."""
    found: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        found.update({k: v for k, v in dotenv_values(env_file).items() if v})
    found.update({k: v for k, v in os.environ.items() if v})
    return found
