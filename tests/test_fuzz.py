"""Schemathesis against the app's own OpenAPI schema: no 5xx, the error envelope on every 4xx.

The request bodies come from the pydantic models (`genai_api.http.openapi.json_body`), so
schemathesis generates both valid requests (answered by the offline mock provider) and
invalid ones (every schema rule broken in turn). Bounded by `MAX_EXAMPLES` per operation;
deselect with `-m "not fuzz"`. New endpoints join by matching `FUZZED`.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from genai_api.app import create_app
from tests.conftest import make_settings

FUZZED = r"^/v1/(chat/completions|completions|embeddings|prompts/.*)$"
MAX_EXAMPLES = 100

pytestmark = pytest.mark.fuzz


def _schema() -> Any:
    """The app's OpenAPI document, called in-process over ASGI.

    Built from `app.openapi()` (no request, no lifespan at collection time); schemathesis
    starts the app's lifespan on the first call and ends it after the test. (Its lazy
    `from_fixture` loader does not work with pytest 9.)
    """
    app = create_app(make_settings(provider="mock", openai_api_key=None, openai_base_url=None))
    loaded = schemathesis.openapi.from_dict(app.openapi())
    loaded.app = app
    return loaded


schema = _schema()


@schema.include(path_regex=FUZZED, method="POST").parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_no_5xx_and_the_error_envelope_on_every_4xx(case: schemathesis.Case) -> None:
    response = case.call()
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"}, body
        error = body["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
        assert isinstance(error["message"], str) and error["message"]
    else:
        assert response.headers["x-cache"][0] in ("HIT", "MISS", "COALESCED", "BYPASS")
