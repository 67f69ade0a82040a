"""`Call`: one generating request (chat, completions, ...) as the pipeline sees it, built by
`Pipeline.prepare`.

Its own module so that what consumes a call (the answers, the relay) needs nothing from
the pipeline that makes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from genai_api.apis.base import Api
from genai_api.controls import CacheControls
from genai_api.models.table import ModelInfo
from genai_api.semantic.layer import Pending


@dataclass(slots=True)
class Call:
    """One request as the pipeline sees it."""

    api: Api  # everything that differs between the OpenAI APIs
    model: ModelInfo
    body: dict[str, Any]  # exactly what is sent upstream
    controls: CacheControls
    key: str  # the X-Cache-Key
    skey: str  # where the entry lives in the store
    cacheable: bool
    requester: str | None = None  # who asks, when the key may hold several answers
    seen: frozenset[int] | None = None  # answers already served to them: a regenerate
    semantic: Pending | None = None  # an opted-in model's request that may match by meaning
    tenant: str = ""  # with `prompt`, what the same request for another model needs
    prompt: str | None = None  # the template it was rendered from
