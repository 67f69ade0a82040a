"""Offline token counting built on tiktoken.

Why this module exists: tiktoken downloads its BPE rank files from
``openaipublic.blob.core.windows.net`` the first time an encoding is used. The
gateway must run in air-gapped deployments, and a first request must never stall
on (or fail because of) a network fetch. So the two rank files the gateway needs
(``cl100k_base`` and ``o200k_base``) ship inside the package under
``genai_api/data/tiktoken/``, named exactly as tiktoken names its cache entries
(the SHA-1 hex digest of the download URL, see ``tiktoken.load.read_file_cached``).
Pointing ``TIKTOKEN_CACHE_DIR`` at that folder makes ``tiktoken.get_encoding``
read them locally with no network access.

Usage at start-up::

    counter = TokenCounter.load()          # configures the cache dir, loads eagerly
    n = counter.count_text("hello", model="gpt-4o")
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import tiktoken

__all__ = [
    "DEFAULT_ENCODINGS",
    "FALLBACK_ENCODING",
    "PACKAGED_DATA_DIR",
    "PACKAGED_FILES",
    "THREAD_OFFLOAD_THRESHOLD",
    "EncodingNotLoadedError",
    "PackagedFile",
    "TiktokenDataError",
    "TokenCounter",
    "configure_offline_tiktoken",
    "verify_tiktoken_data",
]

logger = logging.getLogger(__name__)

CACHE_ENV_VAR: Final = "TIKTOKEN_CACHE_DIR"

#: Folder holding the packaged rank files (installed as package data).
PACKAGED_DATA_DIR: Final[Path] = Path(__file__).resolve().parent.parent / "data" / "tiktoken"

#: Encodings loaded by :meth:`TokenCounter.load` when none are given.
DEFAULT_ENCODINGS: Final[tuple[str, ...]] = ("cl100k_base", "o200k_base")

#: Encoding used for models we cannot attribute to an OpenAI tokenizer (Llama,
#: Mistral, Claude, ...). Their real tokenizers differ; cl100k_base is a
#: reasonable, documented approximation rather than an exact count.
FALLBACK_ENCODING: Final = "cl100k_base"

#: Texts longer than this many characters are encoded in a worker thread by
#: :meth:`TokenCounter.acount_text`. Characters are counted rather than UTF-8
#: bytes because measuring bytes would itself cost a pass over the text; since a
#: character is at least one byte, anything above the threshold is > 64 KiB.
THREAD_OFFLOAD_THRESHOLD: Final = 64 * 1024

# Per OpenAI's cookbook ("How to count tokens with tiktoken"), for all current
# chat models: every message costs 3 extra tokens, a ``name`` field 1 more, and
# every reply is primed with 3 tokens (<|start|>assistant<|message|>).
_TOKENS_PER_MESSAGE: Final = 3
_TOKENS_PER_NAME: Final = 1
_REPLY_PRIMING_TOKENS: Final = 3

# Checked in order, first match wins: the more specific "gpt-4o"/"gpt-4.1"/
# "gpt-4.5" prefixes must precede "gpt-4". gpt-4.5 is not in the original
# brief but tiktoken's own model table maps it to o200k_base.
_MODEL_PREFIXES: Final[tuple[tuple[str, str], ...]] = (
    ("gpt-4o", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-4.5", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("chatgpt-4o", "o200k_base"),
    ("o1", "o200k_base"),
    ("o3", "o200k_base"),
    ("o4", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
    ("text-embedding-3", "cl100k_base"),
    ("text-embedding-ada-002", "cl100k_base"),
)


class TiktokenDataError(RuntimeError):
    """A packaged tiktoken rank file is missing or does not match its hash."""


class EncodingNotLoadedError(LookupError):
    """An encoding was requested that :meth:`TokenCounter.load` did not load.

    Raised instead of loading lazily so that a request can never trigger a
    (possibly networked, certainly slow) tiktoken load on the hot path.
    """


@dataclass(frozen=True, slots=True)
class PackagedFile:
    """One packaged rank file: where tiktoken would download it and its SHA-256."""

    encoding: str
    url: str
    sha256: str

    @property
    def cache_key(self) -> str:
        """File name tiktoken uses in ``TIKTOKEN_CACHE_DIR``: sha1 hex of the URL."""
        return hashlib.sha1(self.url.encode()).hexdigest()


#: URLs and hashes copied from ``tiktoken_ext/openai_public.py`` (``expected_hash=``).
PACKAGED_FILES: Final[tuple[PackagedFile, ...]] = (
    PackagedFile(
        encoding="cl100k_base",
        url="https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    PackagedFile(
        encoding="o200k_base",
        url="https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
)

_verified_dirs: set[Path] = set()
_verify_lock = threading.Lock()


def verify_tiktoken_data(directory: Path | None = None) -> None:
    """Check every packaged rank file in ``directory`` against its SHA-256.

    Why: when tiktoken finds a cache entry whose hash is wrong it silently
    deletes it and re-downloads. Offline that turns a corrupted install into an
    opaque network error at first use (and deletes our file). Checking up front
    gives a clear start-up failure instead.

    Raises:
        TiktokenDataError: a file is missing, unreadable or corrupted.
    """
    folder = PACKAGED_DATA_DIR if directory is None else directory
    for entry in PACKAGED_FILES:
        path = folder / entry.cache_key
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            raise TiktokenDataError(
                f"tiktoken rank file for {entry.encoding} is missing or unreadable at "
                f"{path}: {exc}. Reinstall genai-api (the file ships as package data)."
            ) from exc
        if digest != entry.sha256:
            raise TiktokenDataError(
                f"tiktoken rank file for {entry.encoding} at {path} is corrupted: "
                f"sha256 {digest} != expected {entry.sha256}. Reinstall genai-api "
                "(check that git did not alter it; it is marked binary in .gitattributes)."
            )


def _verify_once(directory: Path) -> None:
    """Verify ``directory`` the first time it is seen; hashing ~5 MB is not free."""
    key = directory.resolve()
    with _verify_lock:
        if key in _verified_dirs:
            return
        verify_tiktoken_data(key)
        _verified_dirs.add(key)


def configure_offline_tiktoken(data_dir: Path | None = None) -> str:
    """Point tiktoken's cache at the packaged rank files, unless the operator chose one.

    If ``TIKTOKEN_CACHE_DIR`` is already set it is left untouched (the operator
    may keep their own, possibly newer, cache; an empty value disables caching,
    also their choice) and the packaged files are not checked. Otherwise the
    variable is set to ``data_dir`` (default: the packaged folder) after its
    files pass :func:`verify_tiktoken_data` (done once per folder per process).

    Must run before the first ``tiktoken.get_encoding`` call: tiktoken caches
    loaded encodings per process, so later changes have no effect.

    Returns:
        The effective ``TIKTOKEN_CACHE_DIR`` value.

    Raises:
        TiktokenDataError: a packaged file is missing or corrupted.
    """
    existing = os.environ.get(CACHE_ENV_VAR)
    if existing is not None:
        logger.info("Using operator-provided %s=%r for tiktoken", CACHE_ENV_VAR, existing)
        return existing
    folder = PACKAGED_DATA_DIR if data_dir is None else data_dir
    _verify_once(folder)
    os.environ[CACHE_ENV_VAR] = str(folder)
    return str(folder)


class TokenCounter:
    """Counts tokens with encodings loaded once at start-up.

    Instances are immutable after construction and tiktoken encoders are
    thread-safe, so one instance can be shared by all requests and threads.
    """

    __slots__ = ("_encodings",)

    def __init__(self, encodings: Mapping[str, tiktoken.Encoding]) -> None:
        """Wrap already-loaded encodings; prefer :meth:`load`."""
        self._encodings: dict[str, tiktoken.Encoding] = dict(encodings)

    @classmethod
    def load(
        cls,
        encodings: Iterable[str] = DEFAULT_ENCODINGS,
        *,
        configure_offline: bool = True,
    ) -> TokenCounter:
        """Load ``encodings`` eagerly (so failures surface at start-up, not mid-request).

        With ``configure_offline`` (the default) :func:`configure_offline_tiktoken`
        runs first so loading needs no network.
        """
        if configure_offline:
            configure_offline_tiktoken()
        return cls({name: tiktoken.get_encoding(name) for name in encodings})

    @property
    def encodings(self) -> frozenset[str]:
        """Names of the loaded encodings (e.g. to validate configuration)."""
        return frozenset(self._encodings)

    def encoding_for_model(self, model: str, configured: str | None = None) -> str:
        """Pick the encoding name for ``model``.

        An explicitly ``configured`` encoding wins. Otherwise the model name is
        matched by prefix, case-insensitively, after dropping a fine-tune
        ``ft:`` prefix and any routing prefix up to the last ``/`` (so
        ``openai/gpt-4o`` and ``ft:gpt-4o-mini:org::id`` behave like
        ``gpt-4o``). Unknown (non-OpenAI) models get :data:`FALLBACK_ENCODING`.
        """
        if configured:
            return configured
        name = model.strip().lower().rsplit("/", 1)[-1].removeprefix("ft:")
        for prefix, encoding in _MODEL_PREFIXES:
            if name.startswith(prefix):
                return encoding
        return FALLBACK_ENCODING

    def get_encoding(self, name: str) -> tiktoken.Encoding:
        """Return a loaded encoding, never loading one on demand."""
        try:
            return self._encodings[name]
        except KeyError:
            raise EncodingNotLoadedError(
                f"tiktoken encoding {name!r} was not loaded at start-up "
                f"(loaded: {sorted(self._encodings)}); add it to TokenCounter.load(encodings=...)"
            ) from None

    def _encoder(self, model: str, encoding: str | None) -> tiktoken.Encoding:
        return self.get_encoding(self.encoding_for_model(model, encoding))

    def count_text(self, text: str, model: str, encoding: str | None = None) -> int:
        """Count tokens in ``text``.

        Uses ``encode_ordinary`` so user text that happens to contain special
        tokens such as ``<|endoftext|>`` is counted as plain text instead of
        raising (tiktoken's ``encode`` rejects it by default).
        """
        return len(self._encoder(model, encoding).encode_ordinary(text))

    async def acount_text(self, text: str, model: str, encoding: str | None = None) -> int:
        """Async :meth:`count_text`: large texts are encoded in a worker thread.

        Encoding megabytes of text takes long enough to stall the event loop
        (tiktoken releases the GIL, so a thread really helps); for small texts
        a thread hop costs more than encoding, so they are counted inline.
        """
        if len(text) > THREAD_OFFLOAD_THRESHOLD:
            return await asyncio.to_thread(self.count_text, text, model, encoding)
        return self.count_text(text, model, encoding)

    def count_chat_messages(
        self,
        messages: Sequence[Mapping[str, Any]],
        model: str,
        encoding: str | None = None,
    ) -> int:
        """Estimate prompt tokens of a chat request, per OpenAI's cookbook formula.

        Each message costs 3 tokens plus the tokens of its string fields
        (``role``, ``content``, ``name``, ...); ``name`` costs 1 more; 3 tokens
        are added for reply priming. ``content`` may be a string or a list of
        parts, of which only ``{"type": "text", "text": ...}`` parts are counted
        (images/audio are billed differently and ignored). Other non-string
        fields (``None`` content, ``tool_calls``, ...) are ignored, so the
        result is an estimate for tool-using requests.
        """
        enc = self._encoder(model, encoding)
        total = _REPLY_PRIMING_TOKENS
        for message in messages:
            total += _TOKENS_PER_MESSAGE
            for key, value in message.items():
                if isinstance(value, str):
                    total += len(enc.encode_ordinary(value))
                elif key == "content" and isinstance(value, list):
                    for part in value:
                        if (
                            isinstance(part, Mapping)
                            and part.get("type") == "text"
                            and isinstance(part.get("text"), str)
                        ):
                            total += len(enc.encode_ordinary(part["text"]))
                if key == "name":
                    total += _TOKENS_PER_NAME
        return total

    @staticmethod
    def count_tokens_list(ids: Sequence[int]) -> int:
        """Count a pre-tokenized prompt: one token per id."""
        return len(ids)

    def max_token_value(self, encoding: str) -> int:
        """Largest valid token id of ``encoding`` (``n_vocab - 1``).

        For validating token-id inputs: ids must lie in ``0..max_token_value``.
        This is an upper bound only; some ids below it are unassigned (e.g.
        100256 in cl100k_base) and fail to decode.
        """
        return self.get_encoding(encoding).max_token_value
