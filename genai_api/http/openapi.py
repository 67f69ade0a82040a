"""OpenAPI documentation for routes that read their JSON body themselves.

The completion routes take a raw `Request` (the body is forwarded as the client sent it,
and parsing it ourselves keeps the hit path fast), so FastAPI cannot see a request model.
`json_body(Model)` puts the pydantic model's schema back into the OpenAPI document, for
readers of `/docs` and for the fuzz tests that generate requests from it.

    >>> @router.post("/v1/chat/completions", openapi_extra=json_body(ChatCompletionRequest))
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

# The error body of every 4xx/5xx (CONTRACT §5).
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}

_ERRORS = {
    "400": "Malformed JSON or a parameter that breaks the schema",
    "401": "Missing or wrong API key",
    "404": "Unknown model (when the models file is closed)",
    "413": "Body over MAX_REQUEST_BYTES",
    "415": "Content-Type is not JSON",
}


def json_body(model: type[BaseModel], *, description: str | None = None) -> dict[str, Any]:
    """`openapi_extra` for a route whose JSON body `model` validates, with its error answers."""
    error = {"application/json": {"schema": ERROR_SCHEMA}}
    return {
        "requestBody": {
            "required": True,
            "description": description or f"An OpenAI `{model.__name__}` as JSON.",
            "content": {"application/json": {"schema": inline_schema(model)}},
        },
        "responses": {
            status: {"description": text, "content": error} for status, text in _ERRORS.items()
        },
    }


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its `$defs` inlined.

    Inside an OpenAPI document a `#/$defs/...` reference would resolve against the document,
    not the embedded schema, so nested models are copied in place (ours are not recursive).
    """
    schema = model.model_json_schema()
    defs: dict[str, Any] = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {name: resolve(value) for name, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved
