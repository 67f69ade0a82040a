"""`GET /dashboard`: one self-contained HTML page drawing `/v1/cache/stats` over time.

The page itself is static and holds no data, so it is served without a key (a browser cannot
send a bearer on navigation); every number it shows comes from `/v1/cache/stats`, which it
calls with the admin key taken from the URL fragment (`/dashboard#key=...`, never sent to
the server) or asked for once and kept in the tab's sessionStorage. No CDN, no external
file: inline CSS and JS, a hand-written SVG chart, and a CSP that allows nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib import resources

from fastapi import APIRouter
from starlette.responses import Response

router = APIRouter()

_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.S)


@cache
def _page() -> tuple[bytes, str]:
    """The page and a Content-Security-Policy allowing exactly its inline script and style."""
    html = resources.files("genai_api").joinpath("static/dashboard.html").read_text("utf-8")
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for tag, body in _INLINE.findall(html):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        hashes[tag].append(f"'sha256-{digest}'")
    csp = (
        "default-src 'none'; connect-src 'self'; img-src 'self' data:; "
        f"script-src {' '.join(hashes['script'])}; style-src {' '.join(hashes['style'])}; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return html.encode(), csp


@router.get("/dashboard", tags=["admin"], include_in_schema=False)
async def dashboard() -> Response:
    html, csp = _page()
    return Response(
        html,
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": csp,
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )
