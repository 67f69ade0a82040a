"""Token ids that are exactly a tokenizer's encoding of a text share that text's entry
(`apis.token_text`; CONTRACT §4): LangChain sends ids, other scripts send strings."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import respx

from genai_api.apis.token_text import text_of
from tests.conftest import completion_response, make_settings, running
from tests.embeddings_provider import CL100K, MODEL, Provider, embed

HELLO = "The quick brown fox jumps over the lazy dog."


@pytest.fixture
def provider(upstream: respx.MockRouter) -> Provider:
    fake = Provider()
    upstream.post("/embeddings").mock(side_effect=fake)
    return fake


def test_the_encoding_of_a_text_is_that_text() -> None:
    assert text_of(CL100K.encode_ordinary(HELLO), CL100K) == HELLO
    assert text_of(CL100K.encode_ordinary("naïve café ☕"), CL100K) == "naïve café ☕"


@pytest.mark.parametrize(
    "ids",
    [
        [100257],  # <|endoftext|>: a special token, not what any text encodes to
        [100256],  # unassigned in cl100k_base: does not decode
        CL100K.encode_ordinary("🙂")[:1],  # half a character: not UTF-8
        [CL100K.encode_ordinary(c)[0] for c in "hello"],  # "hello" spelled letter by letter
    ],
    ids=["special", "unassigned", "partial-utf8", "not-canonical"],
)
def test_ids_no_text_encodes_to_stay_ids(ids: list[int]) -> None:
    assert text_of(ids, CL100K) is None


async def test_embedding_ids_and_their_text_share_one_entry_through_the_sdk(
    provider: Provider,
) -> None:
    ids = CL100K.encode_ordinary(HELLO)
    async with running(make_settings()) as gw:
        first = await gw.client.embeddings.with_raw_response.create(model=MODEL, input=[ids])
        as_text = await embed(gw, [HELLO])
        batch = await embed(gw, [ids, CL100K.encode_ordinary("jumps")])
        texts = await embed(gw, [HELLO, "jumps"])
    jumps = CL100K.encode_ordinary("jumps")
    assert provider.calls == [[ids], [jumps]]  # what goes upstream is never changed
    assert first.headers["x-cache"] == "MISS"
    assert as_text.headers["x-cache"] == "HIT"
    assert as_text.headers["x-cache-key"] == first.headers["x-cache-key"]
    assert (batch.headers["x-cache-hits"], batch.headers["x-cache-misses"]) == ("1", "1")
    assert texts.headers["x-cache"] == "HIT"
    assert texts.headers["x-cache-key"] == batch.headers["x-cache-key"]  # the batch's key too
    stored = first.parse().data[0].embedding  # the SDK asked for base64 and decoded it
    served = as_text.json()["data"][0]["embedding"]
    assert np.array_equal(np.asarray(served, "<f4"), np.asarray(stored, "<f4"))


async def test_ids_of_a_model_without_a_known_tokenizer_are_keyed_as_ids(
    provider: Provider,
) -> None:
    # An open table's unknown model has no tokenizer: cl100k would only be a guess for it.
    ids = CL100K.encode_ordinary(HELLO)
    async with running(make_settings()) as gw:
        for item in (ids, HELLO):
            answer = await gw.http.post(
                "/v1/embeddings",
                json={"model": "some-vendor-embedder", "input": [item]},
                headers={"Authorization": "Bearer client-key"},
            )
            assert answer.headers["x-cache"] == "MISS"
    assert provider.calls == [[ids], [HELLO]]


async def test_ids_that_no_text_encodes_to_do_not_hit_a_text(provider: Provider) -> None:
    spelled = [CL100K.encode_ordinary(c)[0] for c in "hello"]
    async with running(make_settings()) as gw:
        await embed(gw, ["hello"])
        answer = await embed(gw, [spelled])
    assert answer.headers["x-cache"] == "MISS"
    assert provider.calls == [["hello"], [spelled]]


async def test_a_completion_prompt_of_ids_shares_its_texts_entry(
    upstream: respx.MockRouter,
) -> None:
    route = upstream.post("/completions").mock(
        return_value=httpx.Response(200, json=completion_response())
    )
    model = "gpt-3.5-turbo-instruct"  # cl100k_base in the models table
    ids = CL100K.encode_ordinary(HELLO)
    async with running(make_settings()) as gw:
        first = await gw.client.completions.with_raw_response.create(model=model, prompt=ids)
        text = await gw.client.completions.with_raw_response.create(model=model, prompt=HELLO)
        batch = await gw.client.completions.with_raw_response.create(model=model, prompt=[ids])
        texts = await gw.client.completions.with_raw_response.create(model=model, prompt=[HELLO])
    assert (first.headers["x-cache"], text.headers["x-cache"]) == ("MISS", "HIT")
    assert (batch.headers["x-cache"], texts.headers["x-cache"]) == ("MISS", "HIT")
    assert route.call_count == 2
    assorted = [r.content for r in (c.request for c in route.calls)]
    assert all(b'"prompt":[' in body for body in assorted)  # the ids went upstream as ids
