"""Every error the gateway answers, in OpenAI's envelope, from this one place."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from genai_api.errors import GatewayError, InvalidRequest
from genai_api.http.responses import json_response

log = logging.getLogger("genai_api.errors")

_HTTP_TYPES = {
    401: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
}


def error_response(exc: GatewayError) -> Response:
    return json_response(exc.envelope(), status=exc.status_code, headers=exc.headers)


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    if exc.status_code >= 500:
        log.warning(
            "%s %s -> %d: %s", request.method, request.url.path, exc.status_code, exc.message
        )
    return error_response(exc)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
    return error_response(
        InvalidRequest(f"Invalid request: {first.get('msg', 'bad input')}", param=param)
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    # Starlette's own headers go along: a 405 names the allowed methods (`Allow`, RFC 9110).
    error = GatewayError(
        str(exc.detail), status_code=exc.status_code, headers=dict(exc.headers or {})
    )
    error.error_type = _HTTP_TYPES.get(exc.status_code, "invalid_request_error")
    if exc.status_code == 401:  # as AuthenticationFailed answers: a 401 names its scheme
        error.headers.setdefault("WWW-Authenticate", "Bearer")
    if exc.status_code == 404:
        error.message = f"Unknown request URL: {request.method} {request.url.path}."
        error.code = "unknown_url"
    return error_response(error)


async def _client_gone(request: Request, exc: Exception) -> Response:
    # The client hung up while sending its body: nothing to answer, nothing to log loudly.
    log.debug("client disconnected during %s %s", request.method, request.url.path)
    return error_response(
        InvalidRequest("The client closed the connection.", code="client_disconnected")
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(GatewayError("The server had an error while processing your request."))


def install(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _unexpected)
