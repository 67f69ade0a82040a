"""`Call`: one chat or completion request as the pipeline sees it, built by `Pipeline.prepare`.

Its own module so that what consumes a call (the answers, the relay) needs nothing from
the pipeline that makes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from genai_api.controls import CacheControls
from genai_api.models.table import ModelInfo


@dataclass(slots=True)
class Call:
    """One request as the pipeline sees it."""

    endpoint: str  # public name, for logs and metrics: "chat.completions", "completions"
    path: str  # upstream path
    model: ModelInfo
    body: dict[str, Any]  # exactly what is sent upstream
    controls: CacheControls
    key: str  # the X-Cache-Key
    skey: str  # where the entry lives in the store
    cacheable: bool


def is_nondeterministic(body: dict[str, Any]) -> bool:
    """`temperature` > 0 (the provider default is 1) with no `seed`."""
    temperature = body.get("temperature", 1)
    return body.get("seed") is None and isinstance(temperature, int | float) and temperature > 0
