"""Token ids that are exactly a tokenizer's encoding of some text, keyed as that text.

LangChain sends embedding inputs (and some clients completion prompts) as token ids; a
script sending the same texts as strings would otherwise miss every entry the other made.
For a model whose tokenizer the models table names (so it is known exactly, not the
cl100k approximation for other vendors' models), ids that decode to valid UTF-8 and encode
back to exactly themselves are keyed as the text: both forms share one entry. Anything else
(special tokens, ids that decode to partial characters, non-canonical tokenisations a
client built by hand) stays keyed as ids, since another text could not have produced them.
What goes upstream is never changed: only the key.

    >>> text_of(enc.encode_ordinary("hello"), enc)  # doctest: +SKIP
    'hello'
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from tiktoken import Encoding

# Decoding and re-encoding costs ~0.2 µs a token (116 µs for 500): a batch of 64 such
# inputs would cost a hit several milliseconds. Clients that send ids send the same ids
# again (re-embedding a corpus), so answers are remembered, bounded like `decode_shared`,
# under a key the caller may already have (an embedding input's digest of its ids costs
# nothing more; a tuple of 500 ids costs ~4 µs to build and hash).
MEMO_ENTRIES = 4096
_memo: dict[Hashable, str | None] = {}


def text_of(ids: list[int], encoding: Encoding, memo_key: Hashable | None = None) -> str | None:
    """The text `ids` encode exactly, else None. `memo_key` names `ids` under `encoding`
    for the memo (default: the encoding's name and the ids themselves)."""
    key = (encoding.name, tuple(ids)) if memo_key is None else memo_key
    try:
        return _memo[key]
    except KeyError:
        pass
    text = _roundtrip(ids, encoding)
    if len(_memo) >= MEMO_ENTRIES:
        _memo.clear()
    _memo[key] = text
    return text


def remembered(memo_key: Hashable) -> bool:
    """Whether `text_of` has the answer for `memo_key` already (no decoding needed)."""
    return memo_key in _memo


def _roundtrip(ids: list[int], encoding: Encoding) -> str | None:
    try:
        text = encoding.decode_bytes(ids).decode("utf-8")
    except (KeyError, ValueError):  # an id the vocabulary lacks; bytes that are not UTF-8
        return None
    return text if encoding.encode_ordinary(text) == ids else None


def texts_for_key(items: list[Any], encoding: Encoding | None) -> list[Any]:
    """`items` with each token array that is exactly some text replaced by that text."""
    if encoding is None or not any(isinstance(item, list) for item in items):
        return items
    out = []
    for item in items:
        if isinstance(item, list):
            text = text_of(item, encoding)
            out.append(item if text is None else text)
        else:
            out.append(item)
    return out
