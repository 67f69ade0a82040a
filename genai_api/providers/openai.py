"""The real upstream: any OpenAI-compatible server through the official `openai` SDK.

Requests go through the SDK's raw call (`GatewayOpenAI.post_raw`, the low-level `post` with
`cast_to=httpx.Response`) with the body already serialised (orjson), and answers come back
as raw bytes parsed once with orjson: the gateway relays JSON, so building the SDK's
pydantic models for every answer would only cost CPU.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import orjson

from genai_api import sse
from genai_api.apis import BY_PATH
from genai_api.errors import (
    AnswerCut,
    IncompleteStream,
    ProviderError,
    ProviderTimeout,
    ProviderUnreachable,
    StreamCut,
)
from genai_api.providers.sdk_client import GatewayOpenAI

log = logging.getLogger("genai_api.provider")
# A connection that broke once the answer began: httpx's "incomplete chunked read" (and
# "server disconnected" before the status line), aiohttp's "Response payload is not
# completed" (a ReadError through httpx-aiohttp). A refused connection is a ConnectError.
_CUT = (httpx.ReadError, httpx.RemoteProtocolError)


def _status_error(exc: openai.APIStatusError) -> ProviderError:
    body = exc.body if isinstance(exc.body, dict) else {"message": str(exc.body or exc.message)}
    headers: dict[str, str] = {}
    retry_after = exc.response.headers.get("retry-after")
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return ProviderError(exc.message, status_code=exc.status_code, body=body, headers=headers)


def _chunk(data: str) -> dict[str, Any]:
    """One parsed stream event; an error event raises, as the openai SDK's own stream does."""
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise IncompleteStream("The upstream stream carried invalid JSON.") from exc
    if not isinstance(chunk, dict):
        raise IncompleteStream("The upstream stream carried a non-object.")
    error = chunk.get("error")
    if error:
        body = error if isinstance(error, dict) else {"message": str(error)}
        raise ProviderError("The upstream stream failed.", status_code=502, body=body)
    return chunk


LIST_TIMEOUT = 10.0  # seconds for an upstream's `GET /models`


class OpenAIProvider:
    """`api_key=None`: called without a key. `isolated`: an upstream of a models file's own,
    sent nothing the SDK would take from the `OPENAI_*` environment of the default one
    (organization, project, admin key)."""

    name = "openai"

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | None,
        timeout: float,
        max_retries: int,
        http_client: httpx.AsyncClient | None = None,
        isolated: bool = False,
    ) -> None:
        self._client = GatewayOpenAI(
            api_key=api_key,
            keyless=api_key is None,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            http_client=http_client,
        )
        if isolated:
            self._client.organization = self._client.project = None
            self._client.admin_api_key = None

    async def list_models(self) -> dict[str, dict[str, Any]]:
        """The upstream's `GET /models`: each model's entry by id. Raises `ProviderError`
        when it cannot list (an error status, a timeout, no such route)."""
        try:
            response = await self._client.get(
                "/models", cast_to=httpx.Response, options={"timeout": LIST_TIMEOUT}
            )
            data = orjson.loads(response.content)
        except openai.APITimeoutError as exc:
            raise ProviderTimeout() from exc
        except openai.APIConnectionError as exc:
            raise ProviderUnreachable() from exc
        except openai.APIStatusError as exc:
            raise _status_error(exc) from exc
        except orjson.JSONDecodeError as exc:
            raise ProviderError("The model list was not JSON.", status_code=502) from exc
        rows = data.get("data") if isinstance(data, dict) else None
        if not isinstance(rows, list):
            raise ProviderError("The model list had no `data` list.", status_code=502)
        return {
            row["id"]: row
            for row in rows
            if isinstance(row, dict) and isinstance(row.get("id"), str)
        }

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._client.post_raw(path, orjson.dumps(body))
        except openai.APITimeoutError as exc:
            raise ProviderTimeout() from exc
        except openai.APIConnectionError as exc:
            if isinstance(exc.__cause__, _CUT):  # reached; the answer broke off
                log.warning("upstream answer cut: %s", exc.__cause__)
                raise AnswerCut() from exc
            raise ProviderUnreachable() from exc
        except openai.APIStatusError as exc:
            raise _status_error(exc) from exc
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise ProviderError(
                "The upstream provider answered with invalid JSON.", status_code=502
            ) from exc
        if not isinstance(data, dict):
            raise ProviderError(
                "The upstream provider answered with a non-object.", status_code=502
            )
        return data

    async def stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The provider's chunks as they arrive. An error status before the stream starts,
        an `{"error": ...}` event, or an end without `data: [DONE]` raises `ProviderError`
        (a caller stops reading at an API's own last event, if it has one)."""
        try:
            response = await self._client.post_raw(path, orjson.dumps(body), stream=True)
        except openai.APITimeoutError as exc:
            raise ProviderTimeout() from exc
        except openai.APIConnectionError as exc:
            raise ProviderUnreachable() from exc
        except openai.APIStatusError as exc:
            raise _status_error(exc) from exc
        try:
            if response.headers.get("content-type", "").startswith("application/json"):
                # A server that ignores `stream: true` answers whole: stream it ourselves.
                whole = _chunk((await response.aread()).decode())
                for chunk in BY_PATH[path].synthesize(whole):
                    yield chunk
                return
            async for data in sse.data_events(response.aiter_bytes()):
                if data == sse.DONE_DATA:
                    return
                yield _chunk(data)
        except httpx.TimeoutException as exc:
            raise ProviderTimeout() from exc
        except _CUT as exc:
            log.warning("upstream stream cut: %s", exc)
            raise StreamCut() from exc
        except httpx.HTTPError as exc:
            log.warning("upstream stream failed: %s", exc)
            raise ProviderError(
                "The upstream stream could not be read.",
                status_code=502,
                body={"code": "upstream_stream_failed"},
            ) from exc
        finally:
            await response.aclose()
        # Past the end of a stream that did not finish: chat and completions end with
        # `[DONE]`; streams ending with an event (Responses' `response.completed`) are not
        # read this far, as the pipeline stops at that event (`Api.finished`).
        raise IncompleteStream()

    async def aclose(self) -> None:
        await self._client.close()
