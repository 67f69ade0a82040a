"""The vector index against a real server with the query engine (valkey + search module)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from genai_api.semantic.index import SearchMissing, VectorIndex
from tests.search_server import SearchServer, require_search, search_binaries

pytestmark = pytest.mark.redis


@pytest.fixture
async def index(search_url: str) -> AsyncIterator[VectorIndex]:
    idx = VectorIndex.from_url(search_url, f"t{uuid.uuid4().hex[:10]}")
    try:
        yield idx
    finally:
        await idx.delete()
        await idx.aclose()


def _entry(index: VectorIndex, name: str) -> dict[str, object]:
    return {
        "entry": f"{index.namespace}:e:chat:tenant:gpt-4o-mini:-:{name}",
        "key": name * 4,
        "text": f"text of {name}",
        "ttl": 60,
        "tenant": "tenant",
        "model": "gpt-4o-mini",
        "prompt": None,
    }


async def test_nearest_is_filtered_by_scope_and_ordered_by_similarity(index: VectorIndex) -> None:
    await index.add([1.0, 0.0, 0.0], scope="s1", **_entry(index, "a"))  # type: ignore[arg-type]
    await index.add([0.6, 0.8, 0.0], scope="s1", **_entry(index, "b"))  # type: ignore[arg-type]
    await index.add([1.0, 0.0, 0.0], scope="s2", **_entry(index, "c"))  # type: ignore[arg-type]
    found = await index.nearest([1.0, 0.0, 0.0], scope="s1")
    assert [c.key for c in found] == ["a" * 4, "b" * 4]
    assert found[0].similarity == pytest.approx(1.0, abs=1e-5)
    assert found[1].similarity == pytest.approx(0.6, abs=1e-5)
    assert found[0].text == "text of a"
    assert await index.nearest([1.0, 0.0, 0.0], scope="s3") == []


async def test_vectors_expire_with_their_ttl(index: VectorIndex) -> None:
    fields = _entry(index, "a") | {"ttl": 0.3}
    await index.add([1.0, 0.0], scope="s", **fields)  # type: ignore[arg-type]
    assert len(await index.nearest([1.0, 0.0], scope="s")) == 1
    await asyncio.sleep(0.6)
    assert await index.nearest([1.0, 0.0], scope="s") == []


async def test_delete_by_tenant_model_and_key(index: VectorIndex) -> None:
    await index.add([1.0, 0.0], scope="s", **_entry(index, "a"))  # type: ignore[arg-type]
    other = _entry(index, "b") | {"tenant": "other"}
    await index.add([1.0, 0.1], scope="s", **other)  # type: ignore[arg-type]
    assert await index.delete(tenant="other") == 1
    assert [c.key for c in await index.nearest([1.0, 0.0], scope="s")] == ["a" * 4]
    assert await index.delete(model="another-model") == 0
    assert await index.delete(key="a" * 4) == 1
    assert await index.nearest([1.0, 0.0], scope="s") == []


async def test_vectors_of_another_length_live_in_an_index_of_their_own(index: VectorIndex) -> None:
    await index.add([1.0, 0.0], scope="s", **_entry(index, "a"))  # type: ignore[arg-type]
    await index.add([1.0, 0.0, 0.0], scope="s", **_entry(index, "b"))  # type: ignore[arg-type]
    assert [c.key for c in await index.nearest([1.0, 0.0, 0.0], scope="s")] == ["b" * 4]
    assert await index.delete() == 2


async def test_a_server_without_the_module_is_told_apart(tmp_path: Path) -> None:
    if search_binaries() is None:
        require_search()
    server = SearchServer(tmp_path, module=False).start()
    idx = VectorIndex.from_url(server.url, "t")
    try:
        with pytest.raises(SearchMissing):
            await idx.check()
    finally:
        await idx.aclose()
        server.stop()
