"""`/v1/{anything else}`: routes the gateway does not answer itself, relayed upstream.

Declared last, for every method, so a route of the gateway's own always matches first; a
path that only the gateway serves (`/v1/cache`, `/v1/prompts`) keeps the 404/405 it had.
`OwnRoutes` knows the gateway's own routes: the body-limit middleware asks it which
requests are relayed (their bodies are streamed upstream: they get `MAX_UPLOAD_BYTES`).
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Scope

from genai_api.errors import GatewayError
from genai_api.http.deps import GatewayDep

router = APIRouter()

ENDPOINT = "passthrough"  # the metrics' label of every relayed request
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
# Paths of the gateway's own invention: never OpenAI's, never relayed.
GATEWAY_ONLY = ("/v1/cache", "/v1/prompts")
# OpenAI routes on a path where the gateway serves another method: relayed all the same
# (the list of stored chat completions, deleting a fine-tuned model). Any other method the
# gateway's own path does not serve is a 405, as before.
ALSO_UPSTREAM = (("GET", "/v1/chat/completions"), ("DELETE", "/v1/models/"))


class OwnRoutes:
    """The routes of the gateway's own routers (kept on `app.state.own_routes`)."""

    def __init__(self, routers: Iterable[APIRouter]) -> None:
        self.routes = [route for r in routers for route in r.routes]

    def relayed(self, scope: Scope) -> bool:
        """Whether a request goes to the pass-through: a `/v1/` path no own route serves
        (or one of `ALSO_UPSTREAM`), outside the gateway's own `GATEWAY_ONLY` paths."""
        path: str = scope["path"]
        if not path.startswith("/v1/") or path.startswith(GATEWAY_ONLY):
            return False
        partial = False
        for route in self.routes:
            match = route.matches(scope)[0]
            if match is Match.FULL:
                return False
            partial = partial or match is Match.PARTIAL
        return not partial or any(
            scope["method"] == method and (path == p or (p.endswith("/") and path.startswith(p)))
            for method, p in ALSO_UPSTREAM
        )

    def allowed(self, scope: Scope) -> set[str]:
        """The methods own routes serve on this request's path (none: an unknown path)."""
        methods: set[str] = set()
        for route in self.routes:
            if route.matches(scope)[0] is not Match.NONE:
                methods |= set(getattr(route, "methods", None) or ())
        return methods


@router.api_route("/v1/{path:path}", methods=METHODS, include_in_schema=False)
async def passthrough(request: Request, gateway: GatewayDep) -> Response:
    """Relay the request to the default upstream (`genai_api.passthrough`)."""
    own: OwnRoutes = request.app.state.own_routes
    if not own.relayed(request.scope):  # as the router would have answered without this route
        allowed = own.allowed(request.scope)
        if allowed:
            raise HTTPException(405, headers={"Allow": ", ".join(sorted(allowed))})
        raise HTTPException(404)
    # Counted here, one label for every relayed path, before the answer starts (as the
    # access middleware counts the gateway's own endpoints).
    try:
        response = await gateway.passthrough.relay(request, gateway.auth.client(request))
    except GatewayError as exc:
        gateway.metrics.request(ENDPOINT, None, None, exc.status_code)
        raise
    gateway.metrics.request(ENDPOINT, None, None, response.status_code)
    return response
