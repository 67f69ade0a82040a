"""Tests for genai_api.savings.tokenizer: offline tiktoken data and token counting.

Every test runs with networking disabled, so any attempt by tiktoken to
download a rank file fails loudly instead of silently succeeding.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tiktoken
import tiktoken.load
from tiktoken_ext import openai_public

from genai_api.savings.tokenizer import (
    FALLBACK_ENCODING,
    PACKAGED_DATA_DIR,
    PACKAGED_FILES,
    THREAD_OFFLOAD_THRESHOLD,
    EncodingNotLoadedError,
    TiktokenDataError,
    TokenCounter,
    configure_offline_tiktoken,
    verify_tiktoken_data,
)

ENV_VARS = ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR")


class NetworkBlockedError(OSError):
    pass


def _blocked(*_args: Any, **_kwargs: Any) -> Any:
    raise NetworkBlockedError("network access is disabled in tokenizer tests")


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _blocked)
    monkeypatch.setattr(socket.socket, "connect_ex", _blocked)
    monkeypatch.setattr(socket, "create_connection", _blocked)
    monkeypatch.setattr(socket, "getaddrinfo", _blocked)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Unset tiktoken cache variables; restored afterwards even if code sets them.

    (setenv first so monkeypatch records the original state; a bare delenv of an
    unset variable would not undo a later os.environ assignment.)
    """
    for name in ENV_VARS:
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)
    yield


@pytest.fixture
def counter() -> TokenCounter:
    return TokenCounter.load()


# OpenAI cookbook "How to count tokens with tiktoken" example. The cookbook
# reports 129 prompt tokens for gpt-3.5-turbo/gpt-4 (cl100k_base) and 124 for
# gpt-4o/gpt-4o-mini (o200k_base); the same values were computed here with the
# packaged encodings and match the API's reported usage.
COOKBOOK_MESSAGES: list[dict[str, Any]] = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates "
        "corporate jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on "
        "opportunities for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the "
        "client deliverable.",
    },
]


def test_network_is_really_blocked() -> None:
    with pytest.raises(NetworkBlockedError):
        socket.create_connection(("openaipublic.blob.core.windows.net", 443))


def test_packaged_files_follow_tiktoken_cache_naming() -> None:
    tiktoken_source = inspect.getsource(openai_public)
    for entry in PACKAGED_FILES:
        assert entry.cache_key == hashlib.sha1(entry.url.encode()).hexdigest()
        path = PACKAGED_DATA_DIR / entry.cache_key
        assert path.is_file()
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.sha256
        # The URL/hash we ship must be the ones tiktoken itself asks for.
        assert entry.encoding in openai_public.ENCODING_CONSTRUCTORS
        assert f'"{entry.url}"' in tiktoken_source
        assert f'expected_hash="{entry.sha256}"' in tiktoken_source
    assert {e.encoding for e in PACKAGED_FILES} == {"cl100k_base", "o200k_base"}


def test_configure_sets_packaged_dir_on_clean_env() -> None:
    result = configure_offline_tiktoken()
    assert result == str(PACKAGED_DATA_DIR)
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(PACKAGED_DATA_DIR)


@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base"])
def test_fresh_encoding_loads_offline_from_packaged_dir(name: str) -> None:
    """Build a brand-new Encoding (bypassing tiktoken's per-process registry)."""
    configure_offline_tiktoken()
    enc = tiktoken.Encoding(**openai_public.ENCODING_CONSTRUCTORS[name]())
    assert (
        enc.encode("hello world")
        == {
            "cl100k_base": [15339, 1917],
            "o200k_base": [24912, 2375],
        }[name]
    )


def test_operator_cache_dir_is_respected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cl100k = next(e for e in PACKAGED_FILES if e.encoding == "cl100k_base")
    shutil.copy(PACKAGED_DATA_DIR / cl100k.cache_key, tmp_path / cl100k.cache_key)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))

    assert configure_offline_tiktoken() == str(tmp_path)
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(tmp_path)
    # tiktoken now reads from the operator's folder: present file loads...
    ranks = tiktoken.load.load_tiktoken_bpe(cl100k.url, cl100k.sha256)
    assert len(ranks) == 100256
    # ...and a file absent there is fetched from the network (blocked), proving
    # the packaged folder is not being used behind the operator's back.
    o200k = next(e for e in PACKAGED_FILES if e.encoding == "o200k_base")
    # (NetworkBlockedError / requests' ConnectionError are OSErrors; ImportError
    # if requests is not installed.)
    with pytest.raises((OSError, ImportError)):
        tiktoken.load.load_tiktoken_bpe(o200k.url, o200k.sha256)


def test_verify_accepts_packaged_files() -> None:
    verify_tiktoken_data()


def test_verify_detects_corrupted_file(tmp_path: Path) -> None:
    shutil.copytree(PACKAGED_DATA_DIR, tmp_path, dirs_exist_ok=True)
    victim = tmp_path / PACKAGED_FILES[1].cache_key
    data = bytearray(victim.read_bytes())
    data[1000] ^= 0x01
    victim.write_bytes(bytes(data))
    with pytest.raises(TiktokenDataError, match=r"o200k_base.*corrupted"):
        verify_tiktoken_data(tmp_path)


def test_verify_detects_missing_file(tmp_path: Path) -> None:
    shutil.copytree(PACKAGED_DATA_DIR, tmp_path, dirs_exist_ok=True)
    (tmp_path / PACKAGED_FILES[0].cache_key).unlink()
    with pytest.raises(TiktokenDataError, match=r"cl100k_base.*missing"):
        verify_tiktoken_data(tmp_path)


def test_configure_refuses_corrupted_dir(tmp_path: Path) -> None:
    shutil.copytree(PACKAGED_DATA_DIR, tmp_path, dirs_exist_ok=True)
    (tmp_path / PACKAGED_FILES[0].cache_key).write_bytes(b"garbage")
    with pytest.raises(TiktokenDataError):
        configure_offline_tiktoken(tmp_path)
    assert "TIKTOKEN_CACHE_DIR" not in os.environ


def test_load_is_eager(counter: TokenCounter) -> None:
    assert counter.encodings == frozenset({"cl100k_base", "o200k_base"})


@pytest.mark.parametrize("model", ["gpt-4", "gpt-4o"])
def test_hello_world_is_two_tokens(counter: TokenCounter, model: str) -> None:
    assert counter.count_text("hello world", model) == 2


@pytest.mark.parametrize("encoding", ["cl100k_base", "o200k_base"])
def test_known_counts(counter: TokenCounter, encoding: str) -> None:
    # Cookbook: "tiktoken is great!" is 6 tokens in cl100k_base.
    assert counter.count_text("tiktoken is great!", "x", encoding) == 6
    assert counter.count_text("The quick brown fox jumps over the lazy dog.", "x", encoding) == 10
    assert counter.count_text("", "x", encoding) == 0


def test_encodings_differ_where_expected(counter: TokenCounter) -> None:
    text = "hello <|endoftext|> world"
    assert counter.count_text(text, "gpt-4") == 8
    assert counter.count_text(text, "gpt-4o") == 9


@pytest.mark.parametrize("model", ["gpt-4", "gpt-4o", "llama-3-70b"])
def test_special_token_text_does_not_raise(counter: TokenCounter, model: str) -> None:
    # Counted as ordinary text (7 tokens), not as the single special token.
    assert counter.count_text("<|endoftext|>", model) == 7
    assert counter.count_text("<|endofprompt|><|fim_prefix|>", model) > 2


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("GPT-4o", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-4.5-preview", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("gpt-5-mini", "o200k_base"),
        ("o1", "o200k_base"),
        ("o1-mini", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("ft:gpt-4o-mini-2024-07-18:org::abc123", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-4-0613", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("ft:gpt-3.5-turbo:org::x", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("text-embedding-ada-002", "cl100k_base"),
        ("meta-llama/Llama-3.1-8B-Instruct", FALLBACK_ENCODING),
        ("claude-3-5-sonnet", FALLBACK_ENCODING),
        ("", FALLBACK_ENCODING),
    ],
)
def test_encoding_for_model(counter: TokenCounter, model: str, expected: str) -> None:
    assert counter.encoding_for_model(model, None) == expected


def test_configured_encoding_wins(counter: TokenCounter) -> None:
    assert counter.encoding_for_model("gpt-4o", "cl100k_base") == "cl100k_base"
    assert counter.encoding_for_model("mistral-large", "o200k_base") == "o200k_base"
    assert counter.count_text("hello <|endoftext|> world", "gpt-4", "o200k_base") == 9


def test_unloaded_encoding_is_an_error() -> None:
    small = TokenCounter.load(encodings=("cl100k_base",))
    with pytest.raises(EncodingNotLoadedError, match="o200k_base"):
        small.count_text("hi", "gpt-4o")
    with pytest.raises(EncodingNotLoadedError):
        small.count_text("hi", "gpt-4", encoding="p50k_base")


@pytest.mark.parametrize(("model", "expected"), [("gpt-4-0613", 129), ("gpt-4o-mini", 124)])
def test_cookbook_chat_example(counter: TokenCounter, model: str, expected: int) -> None:
    assert counter.count_chat_messages(COOKBOOK_MESSAGES, model) == expected


def test_chat_content_parts_and_non_text_ignored(counter: TokenCounter) -> None:
    as_string = [{"role": "user", "content": "hello world"}]
    as_parts = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hello"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "text", "text": " world"},
            ],
        }
    ]
    # 3 (priming) + 3 (message) + 1 ("user") + 2 ("hello world")
    assert counter.count_chat_messages(as_string, "gpt-4o") == 9
    assert counter.count_chat_messages(as_parts, "gpt-4o") == 9
    assert counter.count_chat_messages([], "gpt-4o") == 3
    assert (
        counter.count_chat_messages(
            [{"role": "assistant", "content": None, "tool_calls": [{"id": "x"}]}], "gpt-4o"
        )
        == 3 + 3 + 1
    )


def test_chat_name_costs_one_extra(counter: TokenCounter) -> None:
    base = [{"role": "user", "content": "hi"}]
    named = [{"role": "user", "content": "hi", "name": "bob"}]
    name_tokens = counter.count_text("bob", "gpt-4")
    assert counter.count_chat_messages(named, "gpt-4") == (
        counter.count_chat_messages(base, "gpt-4") + name_tokens + 1
    )


async def test_acount_small_text_inline(
    counter: TokenCounter, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []
    real = asyncio.to_thread

    async def spy(func: Any, /, *args: Any, **kwargs: Any) -> Any:
        calls.append(func)
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", spy)
    assert await counter.acount_text("hello world", "gpt-4o") == 2
    assert calls == []

    big = "hello world " * (THREAD_OFFLOAD_THRESHOLD // 12 + 1)
    assert len(big) > THREAD_OFFLOAD_THRESHOLD
    assert await counter.acount_text(big, "gpt-4o") == counter.count_text(big, "gpt-4o")
    assert len(calls) == 1


def test_count_tokens_list(counter: TokenCounter) -> None:
    assert counter.count_tokens_list([]) == 0
    assert counter.count_tokens_list([1, 2, 3]) == 3


def test_max_token_value(counter: TokenCounter) -> None:
    assert counter.max_token_value("cl100k_base") == 100276
    assert counter.max_token_value("o200k_base") == 200018
    enc = counter.get_encoding("o200k_base")
    assert counter.max_token_value("o200k_base") == enc.n_vocab - 1
