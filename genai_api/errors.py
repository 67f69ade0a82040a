"""The gateway's exceptions, each carrying the HTTP status and OpenAI error type it maps to.

    GatewayError                 500 server_error
     ├── InvalidRequest          400 invalid_request_error
     │    ├── UnsupportedMediaType 415
     │    └── RequestTooLarge    413
     ├── NotFound                404 invalid_request_error (unknown model, prompt, route)
     ├── AuthenticationFailed    401 invalid_api_key
     ├── PermissionDenied        403 permission_denied
     ├── ProviderError           the provider's own status, body relayed
     │    ├── ProviderUnreachable 502 (connection failed)
     │    ├── ProviderTimeout    504 (no answer within UPSTREAM_TIMEOUT)
     │    ├── AnswerCut          502 (the connection broke while the answer arrived)
     │    └── IncompleteStream   502 (a stream that ended before it finished)
     │         └── StreamCut     502 (its connection broke before the stream ended)
     └── CacheUnavailable        never shown to a client: the cache fails open
          └── WriteRefused       Redis is full (OOM under maxmemory): a write refused, reads go on

    ConfigError (ValueError)     start-up only: a bad variable, models file or template
     └── PromptFileError         a template file (genai_api.prompts)

`genai_api.http.handlers` turns any `GatewayError` into `{"error": {...}}` in one place; the
commands print a `ConfigError` as its lines and exit 2 (`genai_api.startup`).
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    status_code = 500
    error_type = "server_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status_code: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}
        if status_code is not None:
            self.status_code = status_code

    def envelope(self) -> dict[str, Any]:
        """The OpenAI error body for this exception."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(GatewayError):
    status_code = 400
    error_type = "invalid_request_error"


class UnsupportedMediaType(InvalidRequest):
    status_code = 415


class RequestTooLarge(InvalidRequest):
    status_code = 413


class NotFound(GatewayError):
    status_code = 404
    error_type = "invalid_request_error"


class AuthenticationFailed(GatewayError):
    """401, with `WWW-Authenticate: Bearer` (RFC 9110 §11.6.1: a 401 names its scheme, and
    clients and proxies that look for it know to send a bearer token)."""

    status_code = 401
    error_type = "invalid_request_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message, code=code, headers={"WWW-Authenticate": "Bearer"})


class PermissionDenied(GatewayError):
    status_code = 403
    error_type = "invalid_request_error"


class ProviderError(GatewayError):
    """An error answer from the provider, relayed with its status and (when JSON) its body."""

    error_type = "api_error"

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        err = body or {}
        super().__init__(
            str(err.get("message") or message),
            param=err.get("param"),
            code=err.get("code"),
            status_code=status_code,
            headers=headers,
        )
        self.error_type = str(err.get("type") or self.error_type)


class ProviderUnreachable(ProviderError):
    def __init__(self, message: str = "The upstream provider could not be reached.") -> None:
        super().__init__(message, status_code=502, body={"code": "upstream_unreachable"})


class ProviderTimeout(ProviderError):
    def __init__(self, message: str = "The upstream provider did not answer in time.") -> None:
        super().__init__(message, status_code=504, body={"code": "upstream_timeout"})


class AnswerCut(ProviderError):
    def __init__(self) -> None:
        super().__init__(
            "The upstream provider closed the connection before its answer was complete.",
            status_code=502,
            body={"code": "upstream_cut"},
        )


class IncompleteStream(ProviderError):
    """The provider's stream ended without finishing (a choice unfinished, no end marker):
    never stored."""

    def __init__(
        self,
        message: str = "The upstream stream ended before it finished.",
        code: str = "upstream_stream_incomplete",
    ) -> None:
        super().__init__(message, status_code=502, body={"code": code})


class StreamCut(IncompleteStream):
    """The connection carrying the provider's stream broke before the stream ended (a chunked
    body cut short, a reset). The HTTP client's own words for it ("Response payload is not
    completed: <TransferEncodingError: 400 ...>") name its internals, not what happened."""

    def __init__(self) -> None:
        super().__init__(
            "The upstream provider cut the stream before it finished.", "upstream_stream_cut"
        )


class CacheUnavailable(GatewayError):
    """Raised by a store when its backend fails; the pipeline catches it and bypasses."""


class WriteRefused(CacheUnavailable):
    """Redis answered, but refused a write for want of memory (`OOM command not allowed`
    under `maxmemory`, `noeviction`). The write's answer is BYPASS as for any failure, but a
    full Redis is not an unreachable one: it counts for no breaker and spends no request's
    budget, so reads (hits) go on (`genai_api.store.refusals`)."""


class ConfigError(ValueError):
    """Configuration the gateway cannot start with: one line per problem, naming what to fix.

    A `ValueError`, never an HTTP answer: it stops start-up, before anything is served.
    """

    def __init__(self, *problems: str) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
