"""`GET /v1/models` and `GET /v1/models/{model}` as the openai SDK reads them."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import make_settings, running
from tests.endpoints import assert_envelope
from tests.live_server import live_server


async def test_list_names_the_configured_models() -> None:
    async with running(make_settings()) as gw:
        page = await gw.client.models.list()
    assert {"gpt-4o-mini", "text-embedding-3-small"} <= {m.id for m in page.data}


@pytest.mark.parametrize("path", ["/v1/models", "/models", "/v1/models/gpt-4o-mini"])
async def test_head_answers_as_get_does_without_a_body(path: str) -> None:
    async with running(make_settings(gateway_api_keys="key-a")) as gw:
        key = {"Authorization": "Bearer key-a"}
        get, head = await gw.http.get(path, headers=key), await gw.http.head(path, headers=key)
        refused = await gw.http.head(path)
        missing = await gw.http.head("/v1/models/gpt-99", headers=key)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-type"] == get.headers["content-type"] == "application/json"
    assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.content))
    assert (refused.status_code, refused.headers["www-authenticate"]) == (401, "Bearer")
    assert missing.status_code == 404


async def test_retrieve_answers_a_configured_model_with_or_without_v1() -> None:
    async with running(make_settings()) as gw:
        model = await gw.client.models.retrieve("gpt-4o-mini")
        bare = await gw.http.get("/models/gpt-4o-mini")
    assert (model.id, model.object) == ("gpt-4o-mini", "model")
    assert bare.json() == model.model_dump()


async def test_retrieve_answers_a_model_whose_id_has_a_slash(tmp_path: Path) -> None:
    models = tmp_path / "models.toml"
    models.write_text('[models."meta-llama/Llama-3.1-8B"]\nttl = 60\n')
    async with running(make_settings(models_file=models)) as gw:
        model = await gw.client.models.retrieve("meta-llama/Llama-3.1-8B")
    assert model.id == "meta-llama/Llama-3.1-8B"


async def test_retrieve_of_a_model_not_configured_is_404_model_not_found() -> None:
    async with running(make_settings()) as gw:
        with pytest.raises(openai.NotFoundError) as raised:
            await gw.client.models.retrieve("gpt-99")
        answer = await gw.http.get("/v1/models/gpt-99")
    assert raised.value.code == "model_not_found"
    assert assert_envelope(answer, 404)["param"] == "model"


async def test_retrieve_needs_a_client_key_when_keys_are_required() -> None:
    async with running(make_settings(gateway_api_keys="key-a"), api_key="key-a") as gw:
        model = await gw.client.models.retrieve("gpt-4o-mini")
        anonymous = await gw.http.get("/v1/models/gpt-4o-mini")
    assert model.id == "gpt-4o-mini"
    assert assert_envelope(anonymous, 401)["code"] == "invalid_api_key"


def test_a_live_server_answers_head_with_get_s_headers_and_no_body(tmp_path: Path) -> None:
    # uvicorn drops a HEAD answer's body and keeps its Content-Length (RFC 9110 §9.3.2).
    with live_server(tmp_path, {"GATEWAY_API_KEYS": "key-a"}) as url:
        key = {"Authorization": "Bearer key-a"}
        get = httpx.get(url + "/v1/models", headers=key)
        head = httpx.head(url + "/v1/models", headers=key)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == get.headers["content-length"] != "0"
    assert head.headers["content-type"] == get.headers["content-type"]
