"""Canonical keys: what shares an entry and what splits it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from genai_api.keys import embedding_key, embedding_keys, request_key, segment, storage_key

BASE: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "hi", "name": "ann"}],
}


def key(body: dict[str, Any], tenant: str = "t") -> str:
    return request_key("chat.completions", body, tenant=tenant)


def test_key_is_sha256_hex() -> None:
    value = key(BASE)
    assert len(value) == 64 and int(value, 16) >= 0


def test_key_order_and_formatting_do_not_matter() -> None:
    reordered = json.loads(
        json.dumps(
            {
                "messages": [{"name": "ann", "content": "hi", "role": "user"}],
                "model": "gpt-4o-mini",
            },
            indent=3,
        )
    )
    assert key(reordered) == key(BASE)


@pytest.mark.parametrize(
    "change",
    [
        {"messages": [{"role": "user", "content": "hi!"}]},
        {"model": "gpt-4o"},
        {"temperature": 0.5},
        {"max_tokens": 10},
        {"tools": [{"type": "function", "function": {"name": "f"}}]},
        {"response_format": {"type": "json_object"}},
        {"seed": 7},
        {"n": 2},
        {"stop": ["\n"]},
        {"logprobs": True},
    ],
)
def test_output_changing_parameters_split_the_key(change: dict[str, Any]) -> None:
    assert key({**BASE, **change}) != key(BASE)


@pytest.mark.parametrize(
    "extra",
    [
        {"stream": True},
        {"stream_options": {"include_usage": True}},
        {"user": "u-123"},
        {"metadata": {"a": "b"}},
        {"store": True},
        {"cache": {"ttl": 10}},
        {"n": 1},
        {"temperature": 1},
        {"top_p": 1.0},
        {"presence_penalty": 0},
        {"logprobs": False},
    ],
)
def test_fields_that_do_not_change_output_share_the_key(extra: dict[str, Any]) -> None:
    assert key({**BASE, **extra}) == key(BASE)


def test_integer_and_float_temperature_share_the_key() -> None:
    assert key({**BASE, "temperature": 0}) == key({**BASE, "temperature": 0.0})


def test_boolean_is_not_taken_for_a_default_number() -> None:
    assert key({**BASE, "n": True}) != key(BASE)


def test_tenant_and_endpoint_split_the_key() -> None:
    assert key(BASE, tenant="a") != key(BASE, tenant="b")
    assert request_key("completions", BASE, tenant="t") != key(BASE)


def test_embedding_key_ignores_nothing_but_format() -> None:
    a = embedding_key("m", "text", dimensions=None, tenant="t")
    assert a == embedding_key("m", "text", dimensions=None, tenant="t")
    assert a != embedding_key("m", "text", dimensions=256, tenant="t")
    assert a != embedding_key("m2", "text", dimensions=None, tenant="t")
    assert a != embedding_key("m", [1, 2], dimensions=None, tenant="t")


def test_storage_key_segments_are_glob_safe() -> None:
    assert segment("ft:gpt-4o:org*[x]?") == "ft%3Agpt-4o%3Aorg%2A%5Bx%5D%3F"
    skey = storage_key("genai", "chat", "abc", "ft:m", "f" * 64, prompt="summarise")
    assert skey == f"genai:e:chat:abc:ft%3Am:summarise:{'f' * 64}"
    assert storage_key("genai", "chat", "abc", "m", "0" * 64).split(":")[5] == "-"


def test_embedding_key_includes_unlisted_parameters_only_when_given() -> None:
    plain = embedding_key("m", "text", dimensions=None, tenant="t")
    assert plain == embedding_key("m", "text", dimensions=None, tenant="t", extra={})
    query = embedding_key("m", "text", dimensions=None, tenant="t", extra={"input_type": "q"})
    assert query != plain
    assert query != embedding_key(
        "m", "text", dimensions=None, tenant="t", extra={"input_type": "p"}
    )


def test_embedding_keys_of_a_batch_are_each_inputs_own_key() -> None:
    items: list[str | list[int]] = ["a", "b", [1, 2], "a"]
    keys = embedding_keys("m", items, dimensions=256, tenant="t", extra={"input_type": "q"})
    assert keys == [
        embedding_key("m", item, dimensions=256, tenant="t", extra={"input_type": "q"})
        for item in items
    ]
    assert keys[0] == keys[3] and len(set(keys)) == 3


def test_embedding_key_keeps_the_shared_part_and_the_input_apart() -> None:
    # The input's JSON follows the shared part's: a model name that looks like the start of
    # an input, or an input that looks like the end of the shared part, changes nothing.
    assert embedding_key("m", "x", dimensions=None, tenant="t") != embedding_key(
        'm"}\n"', "x", dimensions=None, tenant="t"
    )
    assert embedding_key("m", 'x"}', dimensions=None, tenant="t") != embedding_key(
        "m", "x", dimensions=None, tenant='t"}'
    )
    assert embedding_key("m", "x", dimensions=None, tenant="a") != embedding_key(
        "m", "x", dimensions=None, tenant="b"
    )
