"""A list route's answer with only the caller's objects, paginated as OpenAI's lists are.

The upstream lists every tenant's objects; dropping the others' from one page would leave
pages short or empty while `has_more` is true, and the openai SDK's auto-pagination stops at
the first empty page. So a page is *filled*: upstream pages are read (100 objects each, or
the client's larger `limit`) from the client's `after` cursor until `limit` of the caller's
objects are found, the upstream has no more, or `MAX_PAGES` upstream pages were read. The
answer keeps OpenAI's shape: `data`, `first_id`/`last_id` of what it returns, and `has_more`
true whenever objects may remain past its last item, so the client's next request
(`after=<last id>`, what the SDK sends) resumes exactly there.

Limits, by design: with `before` (backward paging) one upstream page is filtered as it is;
and when `MAX_PAGES` pages in a row hold none of the caller's objects the answer is an empty
page with `has_more: true` and `last_id` set to the last object scanned (a client following
`last_id` goes on; the SDK, which follows the last item, stops there).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from genai_api.errors import InvalidRequest

PAGE_SIZE = 100  # OpenAI's largest page for most lists
MAX_PAGES = 20
DEFAULT_LIMITS = {"file": 10_000}  # OpenAI's default page size per kind; 20 for the others
DEFAULT_LIMIT = 20

Query = list[tuple[str, str]]
Fetch = Callable[[Query], Awaitable[dict[str, Any]]]
Mine = Callable[[list[str]], Awaitable[list[bool]]]


def _limit(query: Query, kind: str) -> int:
    for name, value in query:
        if name == "limit":
            if not value.isdigit() or int(value) < 1:
                raise InvalidRequest("'limit' must be a positive integer.", param="limit")
            return int(value)
    return DEFAULT_LIMITS.get(kind, DEFAULT_LIMIT)


def _with(query: Query, **values: str) -> Query:
    """`query` with each of `values` set (replacing any earlier value of that name)."""
    kept = [(name, value) for name, value in query if name not in values]
    return kept + list(values.items())


def _items(page: dict[str, Any]) -> list[dict[str, Any]]:
    data = page.get("data")
    if not isinstance(data, list):
        return []
    return [item for item in data if isinstance(item, dict) and isinstance(item.get("id"), str)]


async def own_page(fetch: Fetch, mine: Mine, query: Query, kind: str) -> dict[str, Any]:
    """The caller's page of a list route: `fetch(query)` reads one upstream page, `mine(ids)`
    says which ids are the caller's."""
    limit = _limit(query, kind)
    backward = any(name == "before" for name, _ in query)
    request = query if backward else _with(query, limit=str(max(limit, PAGE_SIZE)))
    found: list[dict[str, Any]] = []
    shape: dict[str, Any] = {"object": "list"}
    more = False
    scanned: str | None = None
    for _ in range(1 if backward else MAX_PAGES):
        page = await fetch(request)
        shape = {k: v for k, v in page.items() if k not in ("data", "first_id", "last_id")}
        items = _items(page)
        owned = await mine([item["id"] for item in items]) if items else []
        found += [item for item, ok in zip(items, owned, strict=True) if ok]
        more = page.get("has_more") is True
        if items:
            scanned = items[-1]["id"]
        if len(found) >= limit or not more or not items:
            break
        request = _with(request, after=items[-1]["id"])
    more = more or len(found) > limit
    found = found[:limit]
    return {
        **shape,
        "object": shape.get("object", "list"),
        "data": found,
        "first_id": found[0]["id"] if found else None,
        "last_id": found[-1]["id"] if found else (scanned if more else None),
        "has_more": more,
    }
