"""JSON responses serialised with orjson (the gateway's answers are plain dicts).

A `Decimal` in the content (the stats' dollars) is written as a JSON number in plain decimal
notation with every digit it holds: orjson cannot write a `Decimal` itself, a float would
round it (`0.1 + 0.2`) and may come out as `3.113e-05`, and a string is what dashboards
cannot add. `orjson.Fragment` inserts the digits as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import orjson
from starlette.responses import Response

from genai_api.savings.money import plain


def exact(value: Any) -> orjson.Fragment:
    """orjson's `default` for what it cannot write itself: a finite `Decimal`, as a number."""
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(plain(value))
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_response(
    content: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(content, default=exact),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


class RawResponse(Response):
    """A JSON `Response` built without Starlette's `init_headers`.

    That lower-cases, encodes and checks every header: ~8 µs for the seven a cache hit
    carries, more than the rest of rendering it. Here the names are lower-case already and
    the values plain ASCII (cache result, hex key, integers, a decimal), so they are only
    encoded.
    """

    def __init__(self, body: bytes, headers: Mapping[str, str], status_code: int = 200) -> None:
        self.status_code = status_code
        self.background = None
        self.body = body
        self.raw_headers = [
            (b"content-length", str(len(body)).encode()),
            (b"content-type", b"application/json"),
            *[(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()],
        ]
