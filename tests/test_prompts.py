"""Prompt templates: safe rendering, loading, listing, and cached completions through them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from openai.types.chat import ChatCompletion

from genai_api.errors import InvalidRequest, NotFound
from genai_api.prompts import PromptFileError, PromptLibrary, parse_template
from tests.conftest import CHAT, chat_response, make_settings, running
from tests.streaming_client import HELLO, sse_route, streaming

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "prompts"

GREET = """\
name = "greet"
version = "1"
description = "Greets someone."
model = "gpt-4o-mini"

[parameters]
temperature = 0
max_tokens = 50

[[messages]]
role = "system"
content = "You greet people in {style} style."

[[messages]]
role = "user"
content = "Greet ${who}."
"""


def _template(content: str, **extra: Any) -> Any:
    data = {
        "name": "t",
        "version": "1",
        "model": "m",
        "messages": [{"role": "user", "content": content}],
        **extra,
    }
    return parse_template(Path("t.toml"), data)


def _prompts_dir(tmp_path: Path, *files: tuple[str, str]) -> Path:
    folder = tmp_path / "prompts"
    folder.mkdir(exist_ok=True)
    for name, text in files:
        (folder / name).write_text(text)
    return folder


def _ok(payload: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json=payload)


# --- rendering


def test_both_placeholder_styles_are_filled() -> None:
    t = _template("A ${x} and {y}.")
    assert t.variables == ("x", "y")
    assert t.render({"x": "1", "y": "2"})[0]["content"] == "A 1 and 2."


def test_hostile_values_are_inserted_verbatim_and_never_rescanned() -> None:
    t = _template("${a}|${b}|{c}")
    values = {"a": "{__class__}", "b": "${c}", "c": "{0.__globals__} {b!r} {{c}}"}
    assert t.render(values)[0]["content"] == "{__class__}|${c}|{0.__globals__} {b!r} {{c}}"


def test_attribute_index_and_format_syntax_in_templates_is_plain_text() -> None:
    t = _template("{a.__class__} {a[0]} {a!r} {a:>9} ${a}")
    assert t.variables == ("a",)
    assert t.render({"a": "X"})[0]["content"] == "{a.__class__} {a[0]} {a!r} {a:>9} X"


def test_escapes_write_literal_placeholders() -> None:
    t = _template("{{a}} $${a} ${a}")
    assert t.variables == ("a",)
    assert t.render({"a": "X"})[0]["content"] == "{a} ${a} X"


def test_missing_and_unknown_variables_are_named() -> None:
    t = _template("${text} ${lang}")
    with pytest.raises(InvalidRequest) as info:
        t.render({"text": "x", "colour": "red", "__class__": "y"})
    assert info.value.param == "variables"
    assert "missing variables: lang" in info.value.message
    assert "unknown variables: __class__, colour" in info.value.message


@pytest.mark.parametrize("value", [{"x": 1}, ["a"], None, True])
def test_non_text_values_are_rejected(value: object) -> None:
    with pytest.raises(InvalidRequest) as info:
        _template("${v}").render({"v": value})
    assert info.value.param == "variables.v"


def test_numbers_are_written_as_text() -> None:
    assert _template("${n} ${f}").render({"n": 3, "f": 0.5})[0]["content"] == "3 0.5"


# --- loading


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("name = ", "cannot be read as TOML"),
        ('name = "x"\nversion = "1"\nmodel = "m"\n', "'messages' must be a non-empty array"),
        (GREET.replace('role = "system"', 'role = "robot"'), "messages[0].role"),
        (GREET.replace("temperature = 0", 'messages = "x"'), "may not set messages"),
        (GREET.replace('name = "greet"', 'name = "../etc"'), "name '../etc'"),
        ('surprise = "x"\n' + GREET, "unknown field(s): surprise"),
        (GREET.replace("temperature = 0", 'temperature = "hot"'), "'parameters': Invalid"),
        (GREET.replace("temperature = 0", "tools = 5"), "for 'tools'"),
    ],
)
def test_bad_template_file_is_refused_naming_it(tmp_path: Path, text: str, problem: str) -> None:
    folder = _prompts_dir(tmp_path, ("bad.toml", text))
    with pytest.raises(PromptFileError) as info:
        PromptLibrary.load(folder)
    assert str(folder / "bad.toml") in str(info.value)
    assert problem in str(info.value)


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    folder = _prompts_dir(tmp_path, ("a.toml", GREET), ("b.toml", GREET))
    with pytest.raises(PromptFileError, match="also used by"):
        PromptLibrary.load(folder)


def test_missing_folder_is_an_empty_library(tmp_path: Path) -> None:
    assert len(PromptLibrary.load(tmp_path / "nope")) == 0


async def test_bad_template_stops_start_up(tmp_path: Path) -> None:
    folder = _prompts_dir(tmp_path, ("broken.toml", "name = "))
    with pytest.raises(PromptFileError, match=r"broken\.toml"):
        async with running(make_settings(prompts_dir=folder)):
            pass  # pragma: no cover


def test_shipped_templates_load_and_render() -> None:
    library = PromptLibrary.load(SHIPPED)
    assert {t.name for t in library} == {"summarise", "translate", "classify"}
    for template in library:
        values = {name: f"<{name}-value>" for name in template.variables}
        text = " ".join(m["content"] for m in template.render(values))
        for name in template.variables:
            assert f"<{name}-value>" in text
        assert "${" not in text and template.description and template.model


def test_unknown_name_is_not_found() -> None:
    with pytest.raises(NotFound):
        PromptLibrary.load(SHIPPED).get("nope")


# --- HTTP


async def test_list_shows_each_template_with_its_variables() -> None:
    async with running(make_settings(prompts_dir=SHIPPED)) as gw:
        answer = await gw.http.get("/v1/prompts")
    assert answer.status_code == 200
    doc = answer.json()
    assert doc["object"] == "list"
    by_name = {p["name"]: p for p in doc["data"]}
    assert by_name["translate"] == {
        "name": "translate",
        "version": "1",
        "description": by_name["translate"]["description"],
        "model": "gpt-4o-mini",
        "variables": ["target_language", "text"],
    }
    assert set(by_name) == {"summarise", "translate", "classify"}


async def test_list_needs_a_client_key_when_keys_are_set() -> None:
    async with running(make_settings(prompts_dir=SHIPPED, gateway_api_keys="k1")) as gw:
        assert (await gw.http.get("/v1/prompts")).status_code == 401
        ok = await gw.http.get("/v1/prompts", headers={"Authorization": "Bearer k1"})
    assert ok.status_code == 200


async def test_prompt_completion_is_rendered_and_cached(
    upstream: respx.MockRouter, tmp_path: Path
) -> None:
    route = upstream.post("/chat/completions").mock(return_value=_ok(chat_response()))
    folder = _prompts_dir(tmp_path, ("greet.toml", GREET))
    body = {"variables": {"who": "Ada", "style": "formal"}}
    async with running(make_settings(prompts_dir=folder)) as gw:
        first = await gw.http.post("/v1/prompts/greet/completions", json=body)
        second = await gw.http.post("/v1/prompts/greet/completions", json=body)
    assert (first.status_code, second.status_code) == (200, 200)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert first.content == second.content
    assert route.call_count == 1
    sent = json.loads(route.calls.last.request.content)
    assert sent == {
        "model": "gpt-4o-mini",
        "temperature": 0,
        "max_tokens": 50,
        "messages": [
            {"role": "system", "content": "You greet people in formal style."},
            {"role": "user", "content": "Greet Ada."},
        ],
    }


async def test_openai_client_calls_a_template(upstream: respx.MockRouter, tmp_path: Path) -> None:
    upstream.post("/chat/completions").mock(return_value=_ok(chat_response("Good day, Ada.")))
    folder = _prompts_dir(tmp_path, ("greet.toml", GREET))
    async with running(make_settings(prompts_dir=folder)) as gw:
        completion = await gw.client.post(
            "/prompts/greet/completions",
            body={"variables": {"who": "Ada", "style": "formal"}},
            cast_to=ChatCompletion,
        )
    assert completion.choices[0].message.content == "Good day, Ada."


async def test_request_parameters_override_template_defaults(
    upstream: respx.MockRouter, tmp_path: Path
) -> None:
    route = upstream.post("/chat/completions").mock(return_value=_ok(chat_response()))
    folder = _prompts_dir(tmp_path, ("greet.toml", GREET))
    body = {"variables": {"who": "Ada", "style": "warm"}, "max_tokens": 7, "model": "gpt-4o"}
    async with running(make_settings(prompts_dir=folder)) as gw:
        answer = await gw.http.post("/v1/prompts/greet/completions", json=body)
    assert answer.status_code == 200
    sent = json.loads(route.calls.last.request.content)
    assert (sent["max_tokens"], sent["model"], sent["temperature"]) == (7, "gpt-4o", 0)
    assert "variables" not in sent


async def test_unknown_template_is_404_in_the_envelope(upstream: respx.MockRouter) -> None:
    route = upstream.post("/chat/completions").mock(return_value=_ok(chat_response()))
    async with running(make_settings(prompts_dir=SHIPPED)) as gw:
        answer = await gw.http.post("/v1/prompts/nope/completions", json={"variables": {}})
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "prompt_not_found"
    assert route.call_count == 0


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"variables": {"text": "x"}}, "variables"),
        ({"variables": {"text": "x", "sentences": 2, "extra": "y"}}, "variables"),
        ({"variables": {"text": {"__class__": 1}, "sentences": 2}}, "variables.text"),
        ({"variables": "text=x"}, "variables"),
        ({"variables": {"text": "x", "sentences": 2}, "messages": []}, "messages"),
        ({"variables": {"text": "x", "sentences": 2}, "temperature": "hot"}, "temperature"),
    ],
)
async def test_bad_prompt_requests_are_400_and_store_nothing(
    upstream: respx.MockRouter, body: dict[str, Any], param: str
) -> None:
    route = upstream.post("/chat/completions").mock(return_value=_ok(chat_response()))
    async with running(make_settings(prompts_dir=SHIPPED)) as gw:
        answer = await gw.http.post("/v1/prompts/summarise/completions", json=body)
        deleted = (await gw.http.request("DELETE", "/v1/cache")).json()["deleted"]
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == param
    assert route.call_count == 0 and deleted == 0


async def test_editing_a_template_changes_its_keys(
    upstream: respx.MockRouter, tmp_path: Path, redis_url: str
) -> None:
    route = upstream.post("/chat/completions").mock(return_value=_ok(chat_response()))
    folder = _prompts_dir(tmp_path, ("greet.toml", GREET))
    settings = make_settings(prompts_dir=folder, cache_backend="redis", redis_url=redis_url)
    body = {"variables": {"who": "Ada", "style": "formal"}}

    async def call() -> httpx.Response:
        async with running(settings) as gw:
            return await gw.http.post("/v1/prompts/greet/completions", json=body)

    original = await call()
    (folder / "greet.toml").write_text(GREET.replace("Greet ${who}.", "Say hello to ${who}."))
    edited = await call()
    again = await call()
    assert (original.headers["x-cache"], edited.headers["x-cache"]) == ("MISS", "MISS")
    assert again.headers["x-cache"] == "HIT"
    assert original.headers["x-cache-key"] != edited.headers["x-cache-key"]
    assert json.loads(route.calls.last.request.content)["messages"][1]["content"] == (
        "Say hello to Ada."
    )


@pytest.mark.parametrize("backend", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def test_delete_by_prompt_drops_only_that_templates_entries(
    upstream: respx.MockRouter, request: pytest.FixtureRequest, backend: str
) -> None:
    upstream.post("/chat/completions").mock(return_value=_ok(chat_response()))
    summarise = {"variables": {"text": "Long text.", "sentences": 1}}
    translate = {"variables": {"text": "Hello", "target_language": "French"}}
    extra = {"redis_url": request.getfixturevalue("redis_url")} if backend == "redis" else {}
    settings = make_settings(prompts_dir=SHIPPED, cache_backend=backend, **extra)
    async with running(settings) as gw:
        await gw.http.post("/v1/prompts/summarise/completions", json=summarise)
        await gw.http.post("/v1/prompts/summarise/completions", json={**summarise, "seed": 1})
        await gw.http.post("/v1/prompts/translate/completions", json=translate)
        await gw.client.chat.completions.create(**CHAT)
        deleted = await gw.http.request("DELETE", "/v1/cache", json={"prompt": "summarise"})
        after = [
            (await gw.http.post("/v1/prompts/summarise/completions", json=summarise)),
            (await gw.http.post("/v1/prompts/translate/completions", json=translate)),
        ]
        chat = await gw.client.chat.completions.with_raw_response.create(**CHAT)
    assert deleted.json() == {"deleted": 2}
    assert [a.headers["x-cache"] for a in after] == ["MISS", "HIT"]
    assert chat.headers["x-cache"] == "HIT"


async def test_template_entries_are_apart_from_identical_chat_requests(
    upstream: respx.MockRouter, tmp_path: Path
) -> None:
    route = upstream.post("/chat/completions").mock(return_value=_ok(chat_response()))
    folder = _prompts_dir(tmp_path, ("greet.toml", GREET))
    async with running(make_settings(prompts_dir=folder)) as gw:
        via_template = await gw.http.post(
            "/v1/prompts/greet/completions", json={"variables": {"who": "Ada", "style": "x"}}
        )
        sent = json.loads(route.calls.last.request.content)
        direct = await gw.http.post("/v1/chat/completions", json=sent)
    # Same request, same X-Cache-Key, but stored under the template's name: deleting the
    # template's entries must never take a plain chat entry with it, so they are apart.
    assert via_template.headers["x-cache-key"] == direct.headers["x-cache-key"]
    assert direct.headers["x-cache"] == "MISS"


async def test_tenants_do_not_share_template_entries(
    upstream: respx.MockRouter,
) -> None:
    upstream.post("/chat/completions").mock(return_value=_ok(chat_response()))
    body = {"variables": {"text": "x", "sentences": 1}}
    async with running(make_settings(prompts_dir=SHIPPED, gateway_api_keys="k1,k2")) as gw:
        a = await gw.http.post(
            "/v1/prompts/summarise/completions", json=body, headers={"Authorization": "Bearer k1"}
        )
        b = await gw.http.post(
            "/v1/prompts/summarise/completions", json=body, headers={"Authorization": "Bearer k2"}
        )
    assert (a.headers["x-cache"], b.headers["x-cache"]) == ("MISS", "MISS")


async def test_streamed_prompt_completion_is_relayed_then_served_from_cache(
    upstream: respx.MockRouter, tmp_path: Path
) -> None:
    route = sse_route(upstream, HELLO)
    folder = _prompts_dir(tmp_path, ("greet.toml", GREET))
    body = {"variables": {"who": "Ada", "style": "formal"}}
    async with streaming(make_settings(prompts_dir=folder)) as gw:
        async with gw.http.stream(
            "POST", "/v1/prompts/greet/completions", json={**body, "stream": True}
        ) as streamed:
            text = (await streamed.aread()).decode()
        whole = await gw.http.post("/v1/prompts/greet/completions", json=body)
        deleted = await gw.http.request("DELETE", "/v1/cache", json={"prompt": "greet"})
    assert streamed.headers["x-cache"] == "MISS"
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert '"Hel"' in text and text.rstrip().endswith("data: [DONE]")
    assert whole.headers["x-cache"] == "HIT"
    assert whole.json()["choices"][0]["message"]["content"] == "Hello!"
    assert json.loads(route.calls.last.request.content)["stream"] is True
    assert route.call_count == 1 and deleted.json() == {"deleted": 1}


async def test_openapi_documents_the_prompt_request_body() -> None:
    async with running(make_settings(prompts_dir=SHIPPED)) as gw:
        doc = (await gw.http.get("/openapi.json")).json()
    post = doc["paths"]["/v1/prompts/{name}/completions"]["post"]
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert "variables" in schema["properties"]
    assert "/v1/prompts" in doc["paths"]
