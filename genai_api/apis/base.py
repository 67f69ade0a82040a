"""The seam between the pipeline and each OpenAI API it caches: the `Api` protocol.

The pipeline (key → lookup → coalesce → provider → store → account) is written once; what
differs between chat completions, legacy completions and the Responses API is asked of
that request's `Api`, never found by branching on the endpoint's name:

- its request schema (`check`), and what leaves the key (`key_body`);
- whether a request may use the cache at all (`bypass`: an upstream keeping state a hit
  would skip), whether it samples (`nondeterministic`), and whether an answer may be
  stored (`storable`: not one the upstream marked failed or incomplete);
- how a streamed answer is asked for (`stream_body`), read (`finished`), assembled into the
  entry (`assemble`), replayed from it (`synthesize` for an entry stored whole), shown to
  one client (`client_view`) and framed as Server-Sent Events (`sse_event`, `sse_end`,
  `sse_error`);
- where its usage lives (`usage`), and how to count it when the provider sent none
  (`count`, `size`);
- which upstream objects a request names and an answer gives its tenant (`references`,
  `created`: CONTRACT §3's tenancy of stored responses, files...).

Adding an API is one module implementing this, one route calling `complete` with it
(`genai_api.routes.completions`), and its entry in `genai_api.apis.GENERATING`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from genai_api.errors import GatewayError

if TYPE_CHECKING:
    from tiktoken import Encoding

    from genai_api.savings.tokenizer import TokenCounter

Event = dict[str, Any]
"""One parsed stream event: a chat chunk, a completion chunk, a typed Responses event."""
View = Callable[[Event], Event | None]
"""One client's view of a stream's events: the event as it would have got it, or None."""


class Api(Protocol):
    name: str
    """Public name: the metrics and log label, and part of every key ("chat.completions")."""
    kind: str
    """The storage key's kind segment ("chat"): `DELETE /v1/cache` and operators read it."""
    path: str
    """The upstream path, relative to the provider's base URL ("/chat/completions")."""
    schema: type[BaseModel]
    """The request schema (OpenAPI and template checks)."""
    sse_end: bytes
    """What ends a stream this API sends (`data: [DONE]`), or b"" when nothing does."""

    def check(self, body: dict[str, Any]) -> None:
        """Raise `InvalidRequest` naming the first bad parameter; cheap for plain bodies."""
        ...

    def key_body(self, body: dict[str, Any], encoding: Encoding | None) -> dict[str, Any]:
        """The body reduced to what changes the output (CONTRACT §4). `encoding`: the
        model's tokenizer when the models table names it (known exactly), so token ids that
        are exactly some text's encoding can be keyed as that text (`apis.token_text`)."""
        ...

    def bypass(self, body: dict[str, Any]) -> bool:
        """The upstream keeps state this request reads or writes: never cached (BYPASS)."""
        ...

    def nondeterministic(self, body: dict[str, Any]) -> bool:
        """The answer is sampled (`CACHE_NONDETERMINISTIC=false` bypasses such requests)."""
        ...

    def stream_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """What a streamed provider call sends (e.g. asking for usage)."""
        ...

    def finished(self, event: Event) -> bool:
        """True for the event that ends a successful stream (stop reading there); raises
        `ProviderError` for an event saying the answer failed."""
        ...

    def storable(self, response: dict[str, Any]) -> bool:
        """Whether a whole answer may be stored (one the upstream says is incomplete or failed
        is relayed to its client, never stored)."""
        ...

    def assemble(self, events: list[Event]) -> dict[str, Any]:
        """The whole answer a complete stream makes up; `IncompleteStream` if it is not."""
        ...

    def synthesize(self, response: dict[str, Any]) -> list[Event]:
        """A well-formed stream for an answer stored whole."""
        ...

    def client_view(self, body: dict[str, Any]) -> View:
        """How the client that sent `body` sees each event (e.g. no usage chunk unasked)."""
        ...

    def references(self, body: dict[str, Any]) -> list[tuple[str, str]]:
        """The upstream objects a request names, as `(object id, parameter)`: each must be
        the caller's (`genai_api.tenancy`) before the request goes anywhere."""
        ...

    def created(self, answer: Event) -> list[tuple[str, str]]:
        """The upstream objects a whole answer or a stream event gives the caller, as
        `(object id, kind)` (a stored response's id)."""
        ...

    def usage(self, response: dict[str, Any]) -> dict[str, Any] | None:
        """The provider's usage as the entry stores it (`prompt_tokens`, `completion_tokens`
        at least), or None when the answer carries none a price can be put on."""
        ...

    def count(
        self,
        tokens: TokenCounter,
        model: str,
        encoding: str | None,
        body: dict[str, Any],
        response: dict[str, Any],
    ) -> dict[str, Any]:
        """Usage counted with tiktoken, in the entry's shape, marked `"estimated": true`."""
        ...

    def size(self, body: dict[str, Any], response: dict[str, Any]) -> int:
        """Characters `count` would read (big ones are counted off the event loop)."""
        ...

    def sse_event(self, event: Event) -> bytes:
        """One event as Server-Sent Events bytes."""
        ...

    def sse_error(self, error: GatewayError, after: Event | None) -> bytes:
        """The event that tells a client its stream failed, in the shape its SDK raises;
        `after` is the last event the client got (None: none yet)."""
        ...


def sampled(body: dict[str, Any]) -> bool:
    """`temperature` > 0 (the provider default is 1) with no `seed`."""
    temperature = body.get("temperature", 1)
    return body.get("seed") is None and isinstance(temperature, int | float) and temperature > 0
