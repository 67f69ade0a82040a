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
"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

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
    return CORSMiddleware(
        app,
        allow_origins=origins,
        allow_methods=METHODS,
        allow_headers=["*"],  # the headers a preflight asks for, echoed
        expose_headers=EXPOSED,
        max_age=PREFLIGHT_MAX_AGE,
    )
