"""Reading a request body as a JSON object, with the failure modes a client can cause."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from genai_api.errors import InvalidRequest, UnsupportedMediaType


def _is_json_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("", "application/json", "*/*") or media.endswith("+json")


async def read_json(request: Request) -> dict[str, Any]:
    """The body as a JSON object; 415 for a non-JSON media type, 400 for anything else wrong.

    The size limit is enforced while reading, by `BodyLimitMiddleware`.
    """
    if not _is_json_type(request.headers.get("content-type", "")):
        raise UnsupportedMediaType(
            "Unsupported Content-Type; send the body as application/json.",
            code="unsupported_media_type",
        )
    raw = await request.body()
    if not raw:
        raise InvalidRequest("The request body is empty; expected a JSON object.")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            f"We could not parse the JSON body of your request: {exc}", code="invalid_json"
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return data
