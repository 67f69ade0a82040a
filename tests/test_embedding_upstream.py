"""Provider-sized chunks and usage shares of an embeddings call."""

from __future__ import annotations

from genai_api.embeddings.upstream import CHUNK_INPUTS, CHUNK_TOKENS, apportion, chunks


def test_shares_equal_our_counts_when_the_provider_agrees() -> None:
    assert apportion([3, 1, 2], 6) == [3, 1, 2]
    assert apportion([3, 1, 2], None) == [3, 1, 2]


def test_shares_follow_the_provider_total_in_proportion() -> None:
    shares = apportion([3, 1, 2], 12)
    assert shares == [6, 2, 4]
    uneven = apportion([1, 1, 1], 10)
    assert sum(uneven) == 10 and sorted(uneven) == [3, 3, 4]
    assert apportion([0, 0], 3) == [2, 1]


def test_chunks_respect_the_input_limit() -> None:
    spans = chunks([1] * 5000)
    assert [len(s) for s in spans] == [CHUNK_INPUTS, CHUNK_INPUTS, 5000 - 2 * CHUNK_INPUTS]
    assert [s.start for s in spans] == [0, CHUNK_INPUTS, 2 * CHUNK_INPUTS]


def test_chunks_respect_the_token_limit() -> None:
    big = CHUNK_TOKENS // 2
    assert [len(s) for s in chunks([big, big, 1, big])] == [2, 2]
    # one input over the limit still goes (alone): the provider decides
    assert [len(s) for s in chunks([CHUNK_TOKENS + 1, 1])] == [1, 1]


def test_no_inputs_no_chunks() -> None:
    assert chunks([]) == []
