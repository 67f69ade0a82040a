"""The direct path to the completion endpoints answers exactly as the FastAPI routes do."""

from __future__ import annotations

from typing import Any

import httpx
import respx
from fastapi import FastAPI

from genai_api.app import create_app
from genai_api.http.hot_routes import HotRoutes, hot_routes
from genai_api.routes import completions
from tests.conftest import CHAT, chat_response, make_settings


def test_hot_paths_are_the_post_completion_routes() -> None:
    table = hot_routes(completions.router)
    assert table == {
        "/v1/chat/completions": completions.chat_completions,
        "/chat/completions": completions.chat_completions,
        "/v1/completions": completions.completions,
        "/completions": completions.completions,
    }


def _without_hot_routes(app: FastAPI) -> FastAPI:
    app.user_middleware = [m for m in app.user_middleware if m.cls is not HotRoutes]
    return app


async def _exchange(app: FastAPI) -> list[tuple[int, str | None, Any]]:
    """The same requests, good and bad, each answer reduced to what a client sees."""
    requests: list[dict[str, Any]] = [
        {"json": CHAT},
        {"json": CHAT},
        {"json": {**CHAT, "temperature": "hot"}},
        {"content": b"{not json", "headers": {"content-type": "application/json"}},
        {"json": CHAT, "headers": {"authorization": "Bearer wrong"}},
        {"json": {**CHAT, "cache": {"ttl": -1}}},
    ]
    seen = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            for kwargs in requests:
                headers = {"authorization": "Bearer client-key", **kwargs.pop("headers", {})}
                answer = await http.post("/v1/chat/completions", headers=headers, **kwargs)
                body = answer.json()
                if "id" in body:
                    body["id"] = "-"
                seen.append((answer.status_code, answer.headers.get("x-cache"), body))
    return seen


async def test_hot_path_answers_like_the_fastapi_route(upstream: respx.MockRouter) -> None:
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    settings = make_settings(gateway_api_keys="client-key")
    hot = await _exchange(create_app(settings, http_client=httpx.AsyncClient()))
    settings = make_settings(gateway_api_keys="client-key")
    plain = await _exchange(
        _without_hot_routes(create_app(settings, http_client=httpx.AsyncClient()))
    )
    assert [status for status, _, _ in hot] == [200, 200, 400, 400, 401, 400]
    assert [cache for _, cache, _ in hot] == ["MISS", "HIT", None, None, None, None]
    assert hot == plain
