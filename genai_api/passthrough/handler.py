"""`Passthrough.relay`: one request to a route the gateway does not answer itself, relayed.

The steps, each skipped when tenancy is not enforced (`genai_api.tenancy`):

1. the path: split below `/v1`, refused (404) when it holds empty, `.`/`..` or backslash
   segments, so the upstream gets exactly the path the rule judged; placed in the table
   (`classify`); a route outside the table is refused (403) while tenancy is enforced;
2. the object the path names must be the caller's (else 404, before anything is sent);
3. the body: streamed as it arrives; while tenancy is enforced a JSON body is read whole
   (up to `MAX_REQUEST_BYTES`) and a form body's text fields as they pass, and every object
   id they name must be the caller's;
4. a list route is answered from upstream pages filtered to the caller's objects
   (`genai_api.tenancy.lists`);
5. the upstream's answer is relayed as it arrives; when the gateway records owners, a
   stateful route's JSON or SSE answer is read for the ids it carries (recorded as the
   caller's before the client sees them), and a deleted object's record is dropped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response

from genai_api.errors import (
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ProviderTimeout,
    ProviderUnreachable,
    RequestTooLarge,
)
from genai_api.http.json_limits import check_shape
from genai_api.http.responses import json_response
from genai_api.passthrough.headers import from_upstream, to_upstream
from genai_api.passthrough.relay import Relayed, claimed_events
from genai_api.passthrough.upstream import Content, Upstream
from genai_api.tenancy.catalogue import Target, classify
from genai_api.tenancy.forms import FormIds
from genai_api.tenancy.guard import Tenancy
from genai_api.tenancy.ids import answer_ids, referenced_ids
from genai_api.tenancy.lists import own_page

PREFIX = "/v1/"


class Passthrough:
    def __init__(self, upstream: Upstream | None, tenancy: Tenancy, *, max_json_bytes: int) -> None:
        self.upstream = upstream
        self.tenancy = tenancy
        self.max_json_bytes = max_json_bytes

    async def relay(self, request: Request, tenant: str) -> Response:
        upstream = self.upstream
        if upstream is None:
            raise NotFound(
                f"Unknown request URL: {request.method} {request.url.path}. Routes the gateway "
                "does not serve itself are relayed to OPENAI_BASE_URL, and the mock provider "
                "has no upstream to relay them to.",
                code="unknown_url",
            )
        segments = path_segments(request)
        target = classify(request.method, segments)
        tenancy = self.tenancy
        if tenancy.enforced:
            if target.refused:
                raise PermissionDenied(
                    f"The gateway does not relay /v1/{segments[0]} while several tenants share "
                    "the upstream account: it cannot tell whose objects that route reaches.",
                    code="route_not_relayed",
                )
            if target.object_id is not None:
                await tenancy.check(tenant, target.object_id)
        content, streamed = await self._body(request, tenant)
        if tenancy.enforced and target.is_list:
            return await self._list(upstream, request, tenant, segments, target)
        reads = await self._reads(target, tenant)
        headers = to_upstream(request.headers.raw, streamed=streamed, raw_answer=not reads)
        query = request.scope.get("query_string", b"")
        response = await upstream.send(request.method, segments, query, headers, content)
        if not response.is_success or request.method == "HEAD":
            return Relayed(response, from_upstream(response, reframed=False))
        if target.deletes_object and target.object_id is not None:
            # Gone upstream: its record goes too (and its answer, which names it, is not read).
            await tenancy.forget(target.object_id)
            return Relayed(response, from_upstream(response, reframed=False))
        media = response.headers.get("content-type", "").partition(";")[0].strip().lower()
        if not reads:
            return Relayed(response, from_upstream(response, reframed=False))
        if media == "text/event-stream":

            async def record(events: list[Any]) -> None:
                await tenancy.record_all(tenant, answer_ids(events))

            chunks = claimed_events(response, record)
            return Relayed(response, from_upstream(response, reframed=True), chunks)
        if media != "application/json" and not media.endswith("+json"):
            return Relayed(response, from_upstream(response, reframed=False))
        raw = await _read(response)
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            answer = None
        created = target.kind if target.creates and target.action is None else None
        await tenancy.record_all(tenant, answer_ids(answer, created=created))
        relayed = Response(raw, status_code=response.status_code)
        relayed.raw_headers += from_upstream(response, reframed=True)
        return relayed

    async def _reads(self, target: Target, tenant: str) -> bool:
        """Whether the answer is read for the objects it carries: a stateful route's (not a
        download, not a list), when the request creates something or is about an object of
        the caller's. Without enforcement, an object the caller does not own (it may reach
        any) gives it nothing: only what is created through the gateway is recorded."""
        tenancy = self.tenancy
        if not tenancy.recording or not target.stateful or target.is_list or _download(target):
            return False
        if target.object_id is None or tenancy.enforced:  # a creation, or checked already
            return True
        return await tenancy.owns(tenant, target.object_id)

    async def _body(self, request: Request, tenant: str) -> tuple[Content, bool]:
        """What goes upstream as the body, and whether it is streamed as it arrives."""
        headers = request.headers
        if "transfer-encoding" not in headers and headers.get("content-length", "0") == "0":
            return None, False
        media = headers.get("content-type", "").partition(";")[0].strip().lower()
        if not self.tenancy.enforced:
            return request.stream(), True
        if media == "multipart/form-data":
            return self._checked_form(request, tenant), True
        raw = await self._read_limited(request)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidRequest(
                "While several tenants share the upstream account, the gateway reads a request "
                "body for the object ids it names: send JSON or multipart/form-data.",
                code="invalid_json",
            ) from None
        check_shape(raw, data)
        await self.tenancy.check_all(tenant, referenced_ids(data))
        return raw, False

    async def _checked_form(self, request: Request, tenant: str) -> AsyncIterator[bytes]:
        """A form body streamed on, each chunk sent only once the id fields it completed are
        checked; a refused id stops the body, and the upstream never gets a whole request."""
        form = FormIds(request.headers["content-type"])
        async for chunk in request.stream():
            refs = form.feed(chunk)
            if refs:
                await self.tenancy.check_all(tenant, refs)
            if chunk:
                yield chunk
        await self.tenancy.check_all(tenant, form.close())

    async def _read_limited(self, request: Request) -> bytes:
        """The whole body, refused with 413 past `MAX_REQUEST_BYTES` (the pass-through's
        larger limit is for bodies streamed through, not read into memory)."""
        parts: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_json_bytes:
                raise RequestTooLarge(
                    f"The request body is larger than the limit of {self.max_json_bytes} bytes "
                    "for a JSON body the gateway reads.",
                    code="request_too_large",
                )
            parts.append(chunk)
        return b"".join(parts)

    async def _list(
        self,
        upstream: Upstream,
        request: Request,
        tenant: str,
        segments: tuple[str, ...],
        target: Target,
    ) -> Response:
        async def fetch(query: list[tuple[str, str]]) -> dict[str, Any]:
            return await upstream.json(segments, urlencode(query).encode())

        async def mine(ids: list[str]) -> list[bool]:
            return await self.tenancy.mine(tenant, ids)

        query = parse_qsl(request.url.query, keep_blank_values=True)
        page = await own_page(fetch, mine, query, target.kind or "object")
        await self.tenancy.record_all(tenant, answer_ids(page["data"]))
        return json_response(page)

    async def aclose(self) -> None:
        if self.upstream is not None:
            await self.upstream.aclose()


def path_segments(request: Request) -> tuple[str, ...]:
    """The path below `/v1`, split; 404 for a path the upstream could read otherwise than
    the gateway does (dot segments, empty segments, backslashes, control characters)."""
    path: str = request.scope["path"]
    segments = tuple(path[len(PREFIX) :].split("/"))
    for segment in segments:
        if segment in ("", ".", "..") or "\\" in segment or not segment.isprintable():
            raise NotFound(f"Unknown request URL: {request.method} {path}.", code="unknown_url")
    return segments


def _download(target: Target) -> bool:
    """A content download (`/files/{id}/content`...): bytes relayed, never read."""
    return bool(target.below) and target.below[-1] == "content"


async def _read(response: httpx.Response) -> bytes:
    try:
        return await response.aread()
    except httpx.TimeoutException as exc:
        raise ProviderTimeout() from exc
    except httpx.HTTPError as exc:
        raise ProviderUnreachable(f"The upstream answer was cut: {exc}") from exc
    finally:
        await response.aclose()
