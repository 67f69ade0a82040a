"""What `GET /v1/models` lists: the models a client can actually call (CONTRACT §7).

Chat front-ends build their model picker from `/v1/models`, so a model listed there must
work. The built-in table names OpenAI's models whatever the upstream is: in front of a vLLM
server, `gpt-5` was listed and failed when picked. So each upstream is asked for its own
`GET /models` at start-up and every `REFRESH_SECONDS` after, in the background, and the list
holds, by public name:

- every table model whose upstream lists it (its `upstream_model`, or its public name), with
  that upstream's `created` and `owned_by`;
- every table model of an upstream that cannot list (an error, no such route, the offline
  mock), as configured: nothing is known against it;
- on an open table (`closed = false`, the default), also the default upstream's other models:
  a request naming one is passed through to it and works, so it is listed (and retrieved)
  like the table's.

`GET /v1/models/{id}` answers exactly the models in that list; anything else is 404, as
OpenAI answers for a model it does not have.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from genai_api.models.table import ModelTable

log = logging.getLogger("genai_api.models")

REFRESH_SECONDS = 300.0
FIRST_WAIT = 3.0  # seconds a list request waits for the first answers after start-up

Listing = dict[str, dict[str, Any]]  # id -> the upstream's entry for it


class Lister(Protocol):
    async def list_models(self) -> Listing: ...


class Catalog:
    def __init__(
        self,
        table: ModelTable,
        listers: Mapping[str, Lister | None],
        where: Callable[[str], tuple[str, str]],
        *,
        default: str,
        refresh_seconds: float = REFRESH_SECONDS,
    ) -> None:
        """`listers`: per upstream name, how to ask it (None: it cannot be asked). `where`:
        a public model's (upstream name, name sent upstream). `default`: the default
        upstream's name."""
        self.table = table
        self.listers = dict(listers)
        self.where = where
        self.default = default
        self.refresh_seconds = refresh_seconds
        self.listed: dict[str, Listing | None] = dict.fromkeys(self.listers)
        self._models = self._build()
        self._first = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if any(self.listers.values()):
            self._task = asyncio.create_task(self._run(), name="models-catalog")
        else:
            self._first.set()  # nothing to ask (the mock): the table is the truth

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def models(self) -> list[dict[str, Any]]:
        """The list, once the upstreams first answered (or `FIRST_WAIT` has passed)."""
        if not self._first.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FIRST_WAIT):
                    await self._first.wait()
        return list(self._models.values())

    async def get(self, model: str) -> dict[str, Any] | None:
        await self.models()
        return self._models.get(model)

    async def refresh(self) -> None:
        """Ask every upstream that can list, at once; one that fails keeps its whole table."""
        names = [name for name, lister in self.listers.items() if lister is not None]
        answers = await asyncio.gather(
            *(self.listers[name].list_models() for name in names),  # type: ignore[union-attr]
            return_exceptions=True,
        )
        for name, answer in zip(names, answers, strict=True):
            if isinstance(answer, BaseException):
                if self.listed.get(name) is not None or not self._first.is_set():
                    log.info(
                        "upstream %s cannot list its models (%s): /v1/models shows all its "
                        "table models",
                        name,
                        _why(answer),
                    )
                self.listed[name] = None
            else:
                self.listed[name] = answer
        previous, self._models = self._models, self._build()
        hidden = sorted(
            info.name
            for info in self.table
            if info.name in previous and info.name not in self._models
        )
        if hidden:
            log.info(
                "not listed in /v1/models (their upstream does not serve them): %s",
                ", ".join(hidden),
            )
        self._first.set()

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # a background task: /v1/models keeps its last list
                log.exception("listing the upstreams' models failed")
                self._first.set()
            await asyncio.sleep(self.refresh_seconds)

    def _build(self) -> dict[str, dict[str, Any]]:
        models: dict[str, dict[str, Any]] = {}
        for info in self.table:
            upstream, wire = self.where(info.name)
            listing = self.listed.get(upstream)
            if listing is None:
                models[info.name] = _entry(info.name, None, info.owned_by)
            elif wire in listing:
                models[info.name] = _entry(info.name, listing[wire], info.owned_by)
        default = self.listed.get(self.default)
        if default is not None and not self.table.closed:
            for model, row in default.items():
                if model not in models and self.table.known(model) is None:
                    models[model] = _entry(model, row, "upstream")
        return models


def _entry(name: str, row: Mapping[str, Any] | None, owned_by: str) -> dict[str, Any]:
    row = row or {}
    created = row.get("created")
    owner = row.get("owned_by")
    return {
        "id": name,
        "object": "model",
        "created": created if isinstance(created, int) and not isinstance(created, bool) else 0,
        "owned_by": owner if isinstance(owner, str) and owner else owned_by,
    }


def _why(error: BaseException) -> str:
    status, code = getattr(error, "status_code", None), getattr(error, "code", None)
    if status is None:
        return type(error).__name__
    return f"HTTP {status} {code}" if code else f"HTTP {status}"
