"""The OpenAPI document describes the JSON bodies the completion routes read themselves."""

from __future__ import annotations

from typing import Any

import pytest

from genai_api.app import create_app
from genai_api.http.openapi import ERROR_SCHEMA
from tests.conftest import make_settings


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


@pytest.mark.parametrize(
    ("path", "required"),
    [("/v1/chat/completions", {"model", "messages"}), ("/v1/completions", {"model", "prompt"})],
)
def test_completion_routes_document_their_request_body(path: str, required: set[str]) -> None:
    document = create_app(make_settings()).openapi()
    operation = document["paths"][path]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["required"]) == required
    assert schema["additionalProperties"] is True  # unknown parameters still reach the provider
    assert operation["responses"]["400"]["content"]["application/json"]["schema"] == ERROR_SCHEMA


def test_every_reference_in_the_document_resolves() -> None:
    document = create_app(make_settings()).openapi()
    for ref in _refs(document):
        node: Any = document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        assert isinstance(node, dict), ref
