"""What the pipeline needs from an upstream: one JSON call, and (for streams) a chunk iterator.

Paths are the OpenAI API paths relative to the base URL (`/chat/completions`, `/completions`,
`/responses`, `/embeddings`). Implementations raise `genai_api.errors.ProviderError` and its
subclasses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol


class Provider(Protocol):
    name: str

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """The provider's JSON answer to one non-streamed request."""
        ...

    def stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The provider's SSE chunks, parsed, for a request with `stream: true`."""
        ...

    async def aclose(self) -> None: ...
