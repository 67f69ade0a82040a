"""Shape limits on a parsed JSON body: nesting depth and array length.

Why: orjson parses up to 1,024 levels, but `orjson.dumps` (cache keys, entries) stops at
255 and the SDK's encoder recurses too, so a body nested 300 deep would parse fine and then
crash while it is hashed. A depth cap far below both makes that a 400 instead. The array
cap bounds the per-element work of validation, hashing and forwarding for one request.

Cheap on the common path: the raw bytes are counted first (`bytes.count` runs at memory
speed), and only a body that *could* break a limit is walked. A body with at most
`MAX_DEPTH` brackets cannot nest deeper than that, and one with fewer than
`MAX_ARRAY_ITEMS` commas (or under 2 x `MAX_ARRAY_ITEMS` bytes) cannot hold a longer array,
so an ordinary chat request is decided by two counts and never walked.

    >>> check_shape(b'{"a": [1]}', {"a": [1]})  # fine: returns None
"""

from __future__ import annotations

from typing import Any

from genai_api.errors import InvalidRequest

MAX_DEPTH = 64  # objects and arrays inside each other, the body itself being level 1
MAX_ARRAY_ITEMS = 262_144  # 2**18: a 256k-token prompt given as token ids still fits


def check_shape(raw: bytes, data: Any) -> None:
    """Raise `InvalidRequest` when `data` (parsed from `raw`) nests or lists too much."""
    maybe_deep = raw.count(b"[") + raw.count(b"{") > MAX_DEPTH
    # An array of more than N items takes more than 2N bytes ("[0,0,...]"): count only then.
    maybe_long = len(raw) > 2 * MAX_ARRAY_ITEMS and raw.count(b",") >= MAX_ARRAY_ITEMS
    if maybe_deep or maybe_long:
        _walk(data)


def _walk(data: Any) -> None:
    """Iterative (no recursion to exhaust), visiting containers only; stops at the first fault."""
    # Each entry: (container, its depth, the top-level field it sits under, for `param`).
    stack: list[tuple[Any, int, str | None]] = [(data, 1, None)]
    while stack:
        node, depth, field = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidRequest(
                f"The JSON body nests objects and arrays more than {MAX_DEPTH} levels deep.",
                param=field,
                code="json_too_deep",
            )
        if type(node) is dict:
            for name, child in node.items():
                if type(child) is dict or type(child) is list:
                    stack.append((child, depth + 1, name if field is None else field))
            continue
        if len(node) > MAX_ARRAY_ITEMS:
            raise InvalidRequest(
                f"An array in the JSON body has {len(node)} items; at most "
                f"{MAX_ARRAY_ITEMS} are accepted.",
                param=field,
                code="array_too_long",
            )
        for child in node:
            if type(child) is dict or type(child) is list:
                stack.append((child, depth + 1, field))
