"""`GET /v1/models` and `GET /v1/models/{model}` as the openai SDK reads them."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import make_settings, running
from tests.endpoints import assert_envelope
from tests.live_server import live_server
from tests.redis_server import free_port
from tests.upstreams import (  # noqa: F401 - the fixtures
    LLAMA_WIRE,
    Fakes,
    fakes_fixture,
    upstreams_fixture,
)


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


# --- the list tells the truth: each upstream is asked what it serves (CONTRACT §7)


async def test_the_list_holds_what_each_upstream_serves_with_its_created_and_owner(
    upstreams: Fakes, tmp_path: Path
) -> None:
    async with running(upstreams.settings(tmp_path)) as gw:
        page = await gw.client.models.list()
        llama = await gw.client.models.retrieve("llama-3.1-8b")
        whisper = await gw.client.models.retrieve("whisper-1")
        with pytest.raises(openai.NotFoundError):
            await gw.client.models.retrieve("gpt-5")
    listed = {m.id: m for m in page.data}
    # The built-in table's models the default upstream does not serve are not offered...
    assert "gpt-5" not in listed and "o3" not in listed
    # ...those it serves are, with its `created` and `owned_by`; an alias is listed when its
    # upstream serves its `upstream_model`; TEI cannot list: its table models stay.
    assert (listed["gpt-4o-mini"].created, listed["gpt-4o-mini"].owned_by) == (
        1_700_000_000,
        "fake",
    )
    assert (llama.id, llama.created, llama.owned_by) == ("llama-3.1-8b", 1_700_000_000, "fake")
    assert listed["bge"].created == 0
    # On an open table, the default upstream's other models can be called: listed too.
    assert whisper.id == "whisper-1" and "whisper-1" in listed
    assert LLAMA_WIRE not in listed  # another upstream's name for a table model: not callable
    assert set(listed) == {
        "gpt-4o-mini",
        "gpt-4o",
        "text-embedding-3-small",
        "whisper-1",
        "llama-3.1-8b",
        "bge",
    }


async def test_a_closed_table_lists_only_its_own_models(upstreams: Fakes, tmp_path: Path) -> None:
    settings = upstreams.settings(tmp_path)
    assert settings.models_file is not None
    settings.models_file.write_text("closed = true\n" + settings.models_file.read_text())
    async with running(settings) as gw:
        listed = {m.id for m in (await gw.client.models.list()).data}
        with pytest.raises(openai.NotFoundError):
            await gw.client.models.retrieve("whisper-1")
    assert "whisper-1" not in listed and {"gpt-4o-mini", "llama-3.1-8b", "bge"} <= listed


async def test_an_upstream_that_cannot_list_keeps_all_its_table_models(
    upstreams: Fakes, tmp_path: Path
) -> None:
    extra = f'[models.gone]\nbase_url = "http://127.0.0.1:{free_port()}/v1"\n'  # unreachable
    async with running(upstreams.settings(tmp_path, extra=extra)) as gw:
        listed = {m.id for m in (await gw.client.models.list()).data}
    assert {"gone", "bge"} <= listed  # as TEI's (its /v1/models is 404)


async def test_head_answers_like_get(upstreams: Fakes, tmp_path: Path) -> None:
    async with running(upstreams.settings(tmp_path)) as gw:
        listed = await gw.http.get("/v1/models")
        head = await gw.http.head("/v1/models")
        one = await gw.http.head("/v1/models/llama-3.1-8b")
        missing = await gw.http.head("/v1/models/gpt-5")
    assert head.status_code == one.status_code == 200 and missing.status_code == 404
    assert head.headers["content-type"] == listed.headers["content-type"]
    assert head.headers["content-length"] == listed.headers["content-length"]


async def test_the_offline_mock_lists_the_whole_table() -> None:
    async with running(make_settings(provider=None, openai_api_key=None)) as gw:
        listed = {m.id for m in (await gw.client.models.list()).data}
    assert {"gpt-5", "gpt-4o-mini", "text-embedding-3-small"} <= listed


def test_a_live_server_answers_head_with_get_s_headers_and_no_body(tmp_path: Path) -> None:
    # uvicorn drops a HEAD answer's body and keeps its Content-Length (RFC 9110 §9.3.2).
    with live_server(tmp_path, {"GATEWAY_API_KEYS": "key-a"}) as url:
        key = {"Authorization": "Bearer key-a"}
        get = httpx.get(url + "/v1/models", headers=key)
        head = httpx.head(url + "/v1/models", headers=key)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == get.headers["content-length"] != "0"
    assert head.headers["content-type"] == get.headers["content-type"]
