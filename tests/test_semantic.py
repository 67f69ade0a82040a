"""The semantic cache end to end: the HTTP API, the openai SDK, a respx provider, and a real
valkey-server with the search module holding both the cache and the vector index."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import respx

from genai_api.errors import ConfigError
from genai_api.models.table import ModelTable
from genai_api.semantic import build
from genai_api.settings import Settings
from tests.conftest import Running, chat_response, make_settings, running
from tests.search_server import SearchServer, require_search, search_binaries

pytestmark = pytest.mark.redis

MODEL, OTHER, EMBEDDER = "gpt-4o-mini", "gpt-4o", "text-embedding-3-small"
ASKED = "How do I install numpy with pip?"
PARAPHRASE = "Install numpy using pip"  # the same content words: served by meaning
OPPOSITE = "How do I uninstall numpy with pip?"  # refused by the guard (polarity)
OTHER_TOOL = "How do I install numpy with conda?"  # refused by the strict policy (words)
UNRELATED = "What is the capital of Australia?"

# The fake embedding model: these prompts all land on one vector (as a bag-of-words model
# would put them), so only the guard and the scope tell them apart.
_SAME = {ASKED, PARAPHRASE, OPPOSITE, OTHER_TOOL}
_TOPIC = np.array([1.0, 0.0, 0.0, 0.0], dtype="<f4")


def _vector(text: str) -> np.ndarray:
    if text in _SAME:
        return _TOPIC
    v = np.frombuffer(text.encode().ljust(4, b"x")[:4], dtype=np.uint8).astype("<f4") + 1
    v[0] = 0.0  # orthogonal to the topic
    return v / np.linalg.norm(v)


class Upstream:
    """Chat answers naming the question; embeddings from `_vector`; every call recorded."""

    def __init__(self, router: respx.MockRouter) -> None:
        self.chats: list[str] = []
        self.embedded: list[str] = []
        router.post("/chat/completions").mock(side_effect=self._chat)
        router.post("/embeddings").mock(side_effect=self._embed)

    def _chat(self, request: httpx.Request) -> httpx.Response:
        import orjson

        asked = orjson.loads(request.content)["messages"][-1]["content"]
        self.chats.append(asked)
        return httpx.Response(200, json=chat_response(f"answer to {asked}"))

    def _embed(self, request: httpx.Request) -> httpx.Response:
        import orjson

        body = orjson.loads(request.content)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        self.embedded += inputs
        data = []
        for i, text in enumerate(inputs):
            v = _vector(text)
            emb: Any = (
                base64.b64encode(v.tobytes()).decode()
                if body.get("encoding_format") == "base64"
                else v.tolist()
            )
            data.append({"object": "embedding", "index": i, "embedding": emb})
        usage = {"prompt_tokens": 5 * len(inputs), "total_tokens": 5 * len(inputs)}
        return httpx.Response(
            200, json={"object": "list", "data": data, "model": EMBEDDER, "usage": usage}
        )


def _models_file(tmp_path: Path, semantic: str = "", name: str = "models.toml") -> Path:
    path = tmp_path / name
    path.write_text(
        f'[models."{MODEL}"]\n'
        f'semantic = {{ embedding_model = "{EMBEDDER}", threshold = 0.9{semantic} }}\n'
    )
    return path


@pytest.fixture
def semantic_settings(search_url: str, tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "cache_backend": "redis",
            "redis_url": search_url,
            "models_file": _models_file(tmp_path),
            "gateway_api_keys": "client-key,other-key",
        }
        values.update(overrides)
        return make_settings(**values)

    return make


@pytest.fixture
def upstream_calls(upstream: respx.MockRouter) -> Upstream:
    return Upstream(upstream)


@pytest.fixture
async def gw(semantic_settings: Callable[..., Settings]) -> AsyncIterator[Running]:
    async with running(semantic_settings()) as gw:
        yield gw


async def ask(
    gw: Running,
    text: str,
    *,
    model: str = MODEL,
    key: str = "client-key",
    headers: dict[str, str] | None = None,
    **params: Any,
) -> httpx.Response:
    messages = params.pop("messages", [])
    body = {"model": model, "messages": [*messages, {"role": "user", "content": text}], **params}
    response = await gw.http.post(
        "/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {key}", **(headers or {})},
    )
    assert response.status_code == 200, response.text
    await gw.gateway.pipeline.semantic.settle()  # the miss's vector is indexed
    return response


async def test_a_paraphrase_is_a_semantic_hit(gw: Running, upstream_calls: Upstream) -> None:
    first = await ask(gw, ASKED)
    assert first.headers["x-cache"] == "MISS"
    second = await ask(gw, PARAPHRASE)
    assert second.headers["x-cache"] == "SEMANTIC-HIT"
    assert second.headers["x-cache-key"] == first.headers["x-cache-key"]  # the matched entry
    assert float(second.headers["x-cache-similarity"]) == pytest.approx(1.0, abs=1e-4)
    assert second.json()["choices"][0]["message"]["content"] == f"answer to {ASKED}"
    assert int(second.headers["x-cache-saved-tokens"]) == 17
    assert upstream_calls.chats == [ASKED]
    assert upstream_calls.embedded == [ASKED, PARAPHRASE]  # each embedded once, upstream


async def test_the_sdk_sees_a_semantic_hit_like_any_answer(
    gw: Running, upstream_calls: Upstream
) -> None:
    await ask(gw, ASKED)
    raw = await gw.client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": PARAPHRASE}]
    )
    assert raw.headers["x-cache"] == "SEMANTIC-HIT"
    assert raw.parse().choices[0].message.content == f"answer to {ASKED}"


async def test_a_streamed_paraphrase_replays_the_matched_answer(
    gw: Running, upstream_calls: Upstream
) -> None:
    await ask(gw, ASKED)
    stream = await gw.client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": PARAPHRASE}], stream=True
    )
    assert stream.headers["x-cache"] == "SEMANTIC-HIT"
    text = "".join([c.choices[0].delta.content or "" async for c in stream.parse() if c.choices])
    assert text == f"answer to {ASKED}"
    assert upstream_calls.chats == [ASKED]


@pytest.mark.parametrize("text", [OPPOSITE, OTHER_TOOL, UNRELATED])
async def test_a_near_miss_is_a_miss_even_on_the_same_vector(
    gw: Running, upstream_calls: Upstream, text: str
) -> None:
    await ask(gw, ASKED)
    assert (await ask(gw, text)).headers["x-cache"] == "MISS"
    assert upstream_calls.chats == [ASKED, text]


async def test_the_lexical_policy_serves_what_strict_refuses(
    semantic_settings: Callable[..., Settings], upstream_calls: Upstream, tmp_path: Path
) -> None:
    lexical = semantic_settings(
        models_file=_models_file(tmp_path, ", strict = false", "lexical.toml")
    )
    async with running(lexical) as gw:
        await ask(gw, ASKED)
        assert (await ask(gw, OTHER_TOOL)).headers["x-cache"] == "SEMANTIC-HIT"
        assert (await ask(gw, OPPOSITE)).headers["x-cache"] == "MISS"  # the guard still holds


@pytest.mark.parametrize(
    "change",
    [
        {"key": "other-key"},
        {"messages": [{"role": "system", "content": "Answer in French."}]},
        {
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
            ]
        },
        {"temperature": 0.2},
        {"max_tokens": 20},
        {"model": OTHER},  # a model that did not opt in
    ],
    ids=["tenant", "system-prompt", "earlier-turns", "temperature", "max-tokens", "model"],
)
async def test_a_paraphrase_outside_the_scope_is_a_miss(
    gw: Running, upstream_calls: Upstream, change: dict[str, Any]
) -> None:
    await ask(gw, ASKED)
    assert (await ask(gw, PARAPHRASE, **change)).headers["x-cache"] == "MISS"
    assert upstream_calls.chats == [ASKED, PARAPHRASE]


async def test_the_same_scope_with_a_system_prompt_still_matches(
    gw: Running, upstream_calls: Upstream
) -> None:
    system = [{"role": "system", "content": "Be brief."}]
    await ask(gw, ASKED, messages=system, temperature=0)
    hit = await ask(gw, PARAPHRASE, messages=system, temperature=0)
    assert hit.headers["x-cache"] == "SEMANTIC-HIT"


AUTH = {"authorization": "Bearer client-key"}
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


@pytest.mark.parametrize(
    "params",
    [
        {"tools": TOOLS},
        {"tools": TOOLS, "tool_choice": "auto"},
        {"response_format": {"type": "json_object"}},
        {"n": 2},
    ],
    ids=["tools", "tool_choice", "response_format", "n"],
)
async def test_requests_with_tools_formats_or_choices_are_never_semantic(
    gw: Running, upstream_calls: Upstream, params: dict[str, Any]
) -> None:
    await ask(gw, ASKED, **params)
    assert (await ask(gw, PARAPHRASE, **params)).headers["x-cache"] == "MISS"
    assert upstream_calls.embedded == []  # not even looked up


async def test_an_image_in_the_request_is_never_semantic(
    gw: Running, upstream_calls: Upstream
) -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.test/a.png"}}
    for text in (ASKED, PARAPHRASE):
        content = [{"type": "text", "text": text}, image]
        response = await gw.http.post(
            "/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": content}]},
            headers={"authorization": "Bearer client-key"},
        )
        assert response.headers["x-cache"] == "MISS"
    assert upstream_calls.embedded == []


async def test_no_cache_skips_the_semantic_lookup_and_no_store_skips_the_index(
    gw: Running, upstream_calls: Upstream
) -> None:
    await ask(gw, ASKED)
    fresh = await ask(gw, PARAPHRASE, headers={"cache-control": "no-cache"})
    assert fresh.headers["x-cache"] == "MISS"
    unstored = await ask(gw, UNRELATED, headers={"cache-control": "no-store"})
    assert unstored.headers["x-cache"] == "BYPASS"
    again = await ask(gw, UNRELATED + " ")  # same words: would match, were it indexed
    assert again.headers["x-cache"] == "MISS"


async def test_max_age_applies_to_the_matched_entry(gw: Running, upstream_calls: Upstream) -> None:
    await ask(gw, ASKED)
    await asyncio.sleep(1.1)
    old = await ask(gw, PARAPHRASE, headers={"cache-control": "max-age=0"})
    assert old.headers["x-cache"] == "MISS"


async def test_a_vector_expires_with_its_entry(gw: Running, upstream_calls: Upstream) -> None:
    await ask(gw, ASKED, headers={"x-cache-ttl": "1"})
    await asyncio.sleep(1.3)
    assert (await ask(gw, PARAPHRASE)).headers["x-cache"] == "MISS"
    assert await gw.gateway.pipeline.semantic.index.delete() == 1  # only the new one left


async def test_delete_removes_the_vectors_with_the_entries(
    gw: Running, upstream_calls: Upstream
) -> None:
    first = await ask(gw, ASKED)
    await ask(gw, UNRELATED)
    index = gw.gateway.pipeline.semantic.index
    deleted = await gw.http.request(
        "DELETE", "/v1/cache", json={"key": first.headers["x-cache-key"]}, headers=AUTH
    )
    assert deleted.json() == {"deleted": 1}
    assert await index.delete(key=first.headers["x-cache-key"]) == 0  # gone with its entry
    assert (await ask(gw, PARAPHRASE)).headers["x-cache"] == "MISS"
    await gw.http.request("DELETE", "/v1/cache", headers=AUTH)
    assert await index.delete() == 0  # every vector went with the namespace's entries


async def test_semantic_hits_are_counted_apart_from_exact_hits(
    gw: Running, upstream_calls: Upstream
) -> None:
    await ask(gw, ASKED)
    await ask(gw, ASKED)  # exact HIT
    await ask(gw, PARAPHRASE)  # SEMANTIC-HIT
    stats = (await gw.http.get("/v1/cache/stats", headers=AUTH)).json()
    mini = stats["by_model"][MODEL]
    assert (mini["hits"], mini["misses"], mini["semantic_hits"]) == (1, 1, 1)
    assert mini["hit_ratio"] == pytest.approx(1 / 3, abs=1e-6)
    assert mini["semantic_hit_ratio"] == pytest.approx(1 / 3, abs=1e-6)
    assert mini["tokens_saved"]["total"] == 17
    assert mini["semantic_tokens_saved"]["total"] == 17
    # the query vectors went through the embeddings path: cached and counted
    assert stats["by_model"][EMBEDDER]["misses"] == 2
    metrics = (await gw.http.get("/metrics", headers=AUTH)).text
    assert 'cache="semantic_hit"' in metrics
    assert "genai_semantic_cache_tokens_saved_total" in metrics


async def test_a_repeated_paraphrase_reuses_its_cached_embedding(
    gw: Running, upstream_calls: Upstream
) -> None:
    await ask(gw, ASKED)
    await ask(gw, PARAPHRASE)
    await ask(gw, PARAPHRASE)
    assert upstream_calls.embedded == [ASKED, PARAPHRASE]


def test_a_server_without_the_query_engine_stops_start_up(
    tmp_path: Path, semantic_settings: Callable[..., Settings]
) -> None:
    if search_binaries() is None:
        require_search()
    plain = SearchServer(tmp_path, module=False).start()
    try:
        settings = semantic_settings(semantic_redis_url=plain.url)
        with pytest.raises(ConfigError) as caught:
            build.check_server(settings, ModelTable.load(settings.models_file))
        assert caught.value.problems[0].startswith("SEMANTIC_REDIS_URL: the server has no query")
    finally:
        plain.stop()


async def test_the_gateway_refuses_to_start_on_a_server_without_it(
    tmp_path: Path, semantic_settings: Callable[..., Settings]
) -> None:
    if search_binaries() is None:
        require_search()
    plain = SearchServer(tmp_path, module=False).start()
    try:
        with pytest.raises(ConfigError, match="REDIS_URL: the server has no query engine"):
            async with running(semantic_settings(redis_url=plain.url)):
                pass
    finally:
        plain.stop()


def test_a_memory_cache_without_a_search_server_is_refused(
    semantic_settings: Callable[..., Settings],
) -> None:
    settings = semantic_settings(cache_backend="memory", redis_url=None)
    with pytest.raises(ConfigError, match=r"^SEMANTIC_REDIS_URL: must name a Redis"):
        build.check_server(settings, ModelTable.load(settings.models_file))


async def test_a_search_server_that_goes_away_makes_misses_not_errors(
    tmp_path: Path, semantic_settings: Callable[..., Settings], upstream_calls: Upstream
) -> None:
    if search_binaries() is None:
        require_search()
    index_server = SearchServer(tmp_path).start()
    try:
        settings = semantic_settings(semantic_redis_url=index_server.url)
        async with running(settings) as gw:
            await ask(gw, ASKED)
            index_server.stop()
            started = time.monotonic()
            assert (await ask(gw, PARAPHRASE)).headers["x-cache"] == "MISS"
            took = time.monotonic() - started
    finally:
        index_server.stop()
    # Refused connections fail at once: no retry backoff in front of the provider (redis-py's
    # default held each miss ~3.5 s), not even one command timeout (2 s).
    assert took < build.TIMEOUT, took
