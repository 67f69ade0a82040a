"""CORS for browser front-ends: Starlette's own `CORSMiddleware`, configured for this API.

Off unless `CORS_ALLOW_ORIGINS` names origins (the settings refuse `*` when client keys are
required). On, it wraps the whole app, in front of both the FastAPI stack and the direct hot
path (`genai_api.http.hot_routes`), so that

- a preflight `OPTIONS` for any route is answered before authentication (browsers never send
  credentials on a preflight) with the methods and whatever request headers the page asks
  for (the openai JS SDK sends its own `X-Stainless-*` headers besides `Authorization`);
- every answer of an allowed origin carries `Access-Control-Allow-Origin`, errors included
  (an unexpected 500 too, which Starlette's server-error middleware answers outside any
  middleware added with `add_middleware`);
- page scripts may read the cache's headers (`Access-Control-Expose-Headers`): without it a
  browser hides every response header but the CORS-safelisted few.

Bearer tokens are the API's only credentials, so no cookies are allowed (`allow_credentials`
off), which is also what lets `*` answer `*`.

A `POST` without an `Origin` header was not sent by a browser (browsers send `Origin` on every
`POST`, same-origin ones included), and an answer to a `POST` is not kept by shared caches, so
neither CORS headers nor `Vary: Origin` mean anything on it: `BrowsersOnly` hands such a
request straight to the app. Starlette's middleware wraps every answer's `send` and rewrites
its headers (callgrind: ~50,000 instructions on a ~320,000-instruction cache hit), which a
gateway serving browsers and server-side SDK clients would otherwise charge the SDK clients.
"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

METHODS = ("GET", "HEAD", "POST", "DELETE")
EXPOSED = (
    "X-Cache",
    "X-Cache-Key",
    "X-Cache-Hits",
    "X-Cache-Misses",
    "X-Cache-Coalesced",
    "X-Cache-Saved-Tokens",
    "X-Cache-Saved-Cost-USD",
    "Age",
    "Retry-After",
    "X-Upstream-Model",
)
PREFLIGHT_MAX_AGE = 600  # seconds a browser may reuse a preflight's answer


def with_cors(app: ASGIApp, origins: tuple[str, ...]) -> ASGIApp:
    """`app` behind CORS for `origins` (`("*",)`: any page)."""
    cors = CORSMiddleware(
        app,
        allow_origins=origins,
        allow_methods=METHODS,
        allow_headers=["*"],  # the headers a preflight asks for, echoed
        expose_headers=EXPOSED,
        max_age=PREFLIGHT_MAX_AGE,
    )
    return BrowsersOnly(app, cors)


class BrowsersOnly:
    """`cors` for every request but a `POST` without `Origin` (see the module docstring)."""

    def __init__(self, app: ASGIApp, cors: ASGIApp) -> None:
        self.app = app
        self.cors = cors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            for name, _ in scope["headers"]:
                if name == b"origin":
                    break
            else:
                await self.app(scope, receive, send)
                return
        await self.cors(scope, receive, send)
