"""One module per OpenAI API, each behind the `Api` interface the pipeline calls
(`apis.base`), as vLLM's OpenAI server keeps one serving module per API.

- `chat`: `POST /v1/chat/completions`
- `completions`: `POST /v1/completions` (both share `choices`: chunk streams and answers)
- `responses`: `POST /v1/responses` (its typed event streams: `response_stream`; the text
  of its items, for counting: `response_items`)
- `embeddings`: `POST /v1/embeddings`'s schema and inputs (its per-input pipeline is
  `genai_api.embeddings`)
- `schema`: what the request schemas share (strict models, error wording, the shortcut)

Where to add an API: a module implementing `Api`, a route that calls
`routes.completions.complete` with it, and an entry in `GENERATING` below.
"""

from genai_api.apis.base import Api
from genai_api.apis.chat import CHAT
from genai_api.apis.completions import COMPLETIONS
from genai_api.apis.responses import RESPONSES

GENERATING: tuple[Api, ...] = (CHAT, COMPLETIONS, RESPONSES)
"""The APIs whose answers the pipeline generates, caches, streams and replays."""
BY_PATH: dict[str, Api] = {api.path: api for api in GENERATING}
"""Each generating API by its upstream path (the providers' view of a call)."""

__all__ = ["BY_PATH", "CHAT", "COMPLETIONS", "GENERATING", "RESPONSES", "Api"]
