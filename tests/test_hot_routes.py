"""The direct path to the completion and embeddings endpoints answers exactly as the FastAPI
routes do."""

from __future__ import annotations

from typing import Any

import httpx
import respx
from fastapi import FastAPI

from genai_api.app import create_app
from genai_api.http.hot_routes import GatewayApp, hot_routes
from genai_api.routes import completions, embeddings
from tests.conftest import CHAT, chat_response, make_settings
from tests.embeddings_provider import MODEL, Provider


def test_hot_paths_are_the_post_completion_and_embeddings_routes() -> None:
    table = hot_routes(completions.router, embeddings.router)
    assert table == {
        "/v1/chat/completions": completions.chat_completions,
        "/chat/completions": completions.chat_completions,
        "/v1/completions": completions.completions,
        "/completions": completions.completions,
        "/v1/responses": completions.responses,
        "/responses": completions.responses,
        "/v1/embeddings": embeddings.embeddings,
        "/embeddings": embeddings.embeddings,
    }


def _without_hot_routes(app: GatewayApp) -> GatewayApp:
    app.drop_hot_routes()
    return app


CHAT_REQUESTS: list[dict[str, Any]] = [
    {"json": CHAT},
    {"json": CHAT},
    {"json": {**CHAT, "temperature": "hot"}},
    {"content": b"{not json", "headers": {"content-type": "application/json"}},
    {"json": CHAT, "headers": {"authorization": "Bearer wrong"}},
    {"json": {**CHAT, "cache": {"ttl": -1}}},
]
EMBEDDINGS = {"model": MODEL, "input": ["a", "b"], "encoding_format": "base64"}
EMBEDDINGS_REQUESTS: list[dict[str, Any]] = [
    {"json": EMBEDDINGS},
    {"json": {**EMBEDDINGS, "input": ["b", "c"], "encoding_format": "float"}},
    {"json": {**EMBEDDINGS, "input": []}},
    {"json": {**EMBEDDINGS, "encoding_format": "hex"}},
    {"json": EMBEDDINGS, "headers": {"authorization": "Bearer wrong"}},
]


async def _exchange(
    app: FastAPI, path: str = "/v1/chat/completions", requests: list[dict[str, Any]] = CHAT_REQUESTS
) -> list[tuple[int, dict[str, str], Any]]:
    """The same requests, good and bad, each answer reduced to what a client sees."""
    seen = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            for request in requests:
                kwargs = dict(request)
                headers = {"authorization": "Bearer client-key", **kwargs.pop("headers", {})}
                answer = await http.post(path, headers=headers, **kwargs)
                body = answer.json()
                if "id" in body:
                    body["id"] = "-"
                cache = {k: v for k, v in answer.headers.items() if k.startswith("x-cache")}
                seen.append((answer.status_code, cache, body))
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
    assert [cache.get("x-cache") for _, cache, _ in hot] == ["MISS", "HIT", None, None, None, None]
    assert hot == plain


async def test_hot_embeddings_path_answers_like_the_fastapi_route(
    upstream: respx.MockRouter,
) -> None:
    upstream.post("/embeddings").mock(side_effect=Provider())
    answers = []
    for hot in (True, False):
        app = create_app(
            make_settings(gateway_api_keys="client-key"), http_client=httpx.AsyncClient()
        )
        if not hot:
            app = _without_hot_routes(app)
        answers.append(await _exchange(app, "/v1/embeddings", EMBEDDINGS_REQUESTS))
    hot_answers, plain = answers
    assert [status for status, _, _ in hot_answers] == [200, 200, 400, 400, 401]
    assert [cache.get("x-cache-hits") for _, cache, _ in hot_answers[:2]] == ["0", "1"]
    assert hot_answers == plain


async def _post(app: FastAPI, path: str, **kwargs: Any) -> httpx.Response:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            headers = {"authorization": "Bearer client-key", **kwargs.pop("headers", {})}
            return await http.post(path, headers=headers, **kwargs)


async def test_hot_paths_skip_fastapi_and_other_requests_do_not(
    upstream: respx.MockRouter, monkeypatch: Any
) -> None:
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    stored = {"object": "list", "data": [], "has_more": False}
    upstream.get("/chat/completions").mock(return_value=httpx.Response(200, json=stored))
    app = create_app(make_settings(gateway_api_keys="client-key"), http_client=httpx.AsyncClient())
    through_fastapi: list[str] = []
    stack = FastAPI.__call__

    async def counted(self: FastAPI, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            through_fastapi.append(scope["path"])
        await stack(self, scope, receive, send)

    monkeypatch.setattr(FastAPI, "__call__", counted)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            auth = {"authorization": "Bearer client-key"}
            assert (
                await http.post("/v1/chat/completions", json=CHAT, headers=auth)
            ).status_code == 200
            # OpenAI's list of stored chat completions: relayed, through FastAPI's stack.
            assert (await http.get("/v1/chat/completions", headers=auth)).status_code == 200
            assert (await http.get("/healthz")).status_code == 200
    assert through_fastapi == ["/v1/chat/completions", "/healthz"]


async def test_hot_path_answers_an_unexpected_error_in_openai_shape(
    upstream: respx.MockRouter, monkeypatch: Any
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(completions, "complete", broken)
    app = create_app(make_settings(gateway_api_keys="client-key"), http_client=httpx.AsyncClient())
    assert app.hot is not None
    answer = await _post(app, "/v1/chat/completions", json=CHAT)
    assert answer.status_code == 500
    error = answer.json()["error"]
    assert error["type"] == "server_error"
    assert "boom" not in answer.text


async def test_hot_path_keeps_the_body_limit_and_the_access_log(
    upstream: respx.MockRouter, caplog: Any
) -> None:
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    settings = make_settings(gateway_api_keys="client-key", max_request_bytes=2048)
    app = create_app(settings, http_client=httpx.AsyncClient())
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 4096}]}
    caplog.set_level("INFO", logger="genai_api.access")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            auth = {"authorization": "Bearer client-key"}
            answer = await http.post("/v1/chat/completions", json=big, headers=auth)
            assert answer.status_code == 413
            assert answer.json()["error"]["code"] == "request_too_large"
            answer = await http.post("/v1/chat/completions", json=CHAT, headers=auth)
            assert answer.status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "genai_api.access"]
    assert lines[-1].startswith("POST /v1/chat/completions 200 cache=MISS model=gpt-4o-mini")


async def test_configured_telemetry_turns_the_hot_path_off(
    upstream: respx.MockRouter, monkeypatch: Any
) -> None:
    upstream.post("/chat/completions").mock(return_value=httpx.Response(200, json=chat_response()))
    app = create_app(make_settings(gateway_api_keys="client-key"), http_client=httpx.AsyncClient())
    monkeypatch.setattr(app._native_telemetry, "enabled", lambda: True)
    assert app.hot is not None
    async with app.router.lifespan_context(app):
        assert app.hot is None


async def test_a_failing_error_handler_still_answers_in_openai_shape(
    upstream: respx.MockRouter, monkeypatch: Any
) -> None:
    from genai_api.errors import GatewayError, InvalidRequest

    async def refused(*args: Any, **kwargs: Any) -> Any:
        raise InvalidRequest("nope")

    async def broken_handler(request: Any, exc: Exception) -> Any:
        raise RuntimeError("the handler itself failed")

    monkeypatch.setattr(completions, "complete", refused)
    app = create_app(make_settings(gateway_api_keys="client-key"), http_client=httpx.AsyncClient())
    app.exception_handlers[GatewayError] = broken_handler
    answer = await _post(app, "/v1/chat/completions", json=CHAT)
    assert answer.status_code == 500
    assert answer.json()["error"]["type"] == "server_error"
