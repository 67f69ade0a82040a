"""OpenAI batch-file lines, and the tally of what the cache did with each (for `warm`).

A batch line is `{"custom_id", "method", "url", "body"}` (the format of OpenAI's Batch
API input files). Only the POST endpoints that produce cacheable answers are accepted, so
a warm-up file can never reach an admin endpoint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
import orjson

from genai_api.errors import NotFound
from genai_api.models.table import ModelTable

_URL = re.compile(
    r"^/v1/(chat/completions|completions|responses|embeddings"
    r"|prompts/[A-Za-z0-9][A-Za-z0-9_.\-]*/completions)$"
)
# Warming stores whole answers; the key ignores these, so leaving them out fills the same entry.
_STREAM_FIELDS = ("stream", "stream_options")


class LineError(ValueError):
    """A line that cannot be sent; its message says why, for the report."""


@dataclass(frozen=True, slots=True)
class BatchLine:
    number: int  # 1-based line number in the file
    custom_id: str | None
    url: str
    body: dict[str, Any]


def parse_line(number: int, text: bytes | str) -> BatchLine:
    """One line of a batch file, checked; raises `LineError` saying what is wrong."""
    if isinstance(text, bytes):
        try:
            text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LineError(
                f"not valid UTF-8 (byte 0x{text[exc.start]:02x} at column {exc.start + 1})"
            ) from None
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise LineError(f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise LineError("not a JSON object")
    custom_id = data.get("custom_id")
    if custom_id is not None and not isinstance(custom_id, str):
        raise LineError("'custom_id' must be a string")
    method = data.get("method", "POST")
    if not isinstance(method, str) or method.upper() != "POST":
        raise LineError(f"'method' must be POST, not {method!r}")
    url = data.get("url")
    if not isinstance(url, str):
        raise LineError("missing 'url'")
    url = url if url.startswith("/v1/") else "/v1" + (url if url.startswith("/") else "/" + url)
    if not _URL.match(url):
        raise LineError(
            f"unsupported url {data['url']!r} (chat/completions, completions, responses, "
            "embeddings or prompts/{name}/completions)"
        )
    body = data.get("body")
    if not isinstance(body, dict):
        raise LineError("'body' must be a JSON object")
    body = {k: v for k, v in body.items() if k not in _STREAM_FIELDS}
    return BatchLine(number, custom_id, url, body)


def _int(value: object) -> int:
    if isinstance(value, int | str) and not isinstance(value, bool):
        try:
            return int(value)
        except ValueError:
            return 0
    return 0


def _decimal(value: str | None) -> Decimal:
    try:
        return Decimal(value) if value else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


@dataclass
class WarmSummary:
    """What a warm-up did, line by line; `errors` are lines that failed."""

    lines: int = 0
    hits: int = 0
    misses: int = 0
    coalesced: int = 0
    bypassed: int = 0
    tokens_spent: int = 0
    tokens_saved: int = 0
    cost_spent: Decimal = field(default_factory=Decimal)
    cost_saved: Decimal = field(default_factory=Decimal)
    failures: list[tuple[int, str]] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return len(self.failures)

    def fail(self, number: int, problem: str) -> None:
        self.lines += 1
        self.failures.append((number, problem))

    def count(self, line: BatchLine, response: httpx.Response, models: ModelTable) -> None:
        """Tally one successful answer from its cache headers and its `usage`."""
        self.lines += 1
        status = response.headers.get("x-cache", "").upper()
        if status not in ("HIT", "MISS", "COALESCED", "BYPASS"):
            # An embedding batch answers per input; it is a hit when nothing went upstream.
            misses = response.headers.get("x-cache-misses", "1")
            status = "HIT" if misses == "0" else "MISS"
        if status in ("HIT", "COALESCED"):
            self.hits += status == "HIT"
            self.coalesced += status == "COALESCED"
            self.tokens_saved += _int(response.headers.get("x-cache-saved-tokens"))
            self.cost_saved += _decimal(response.headers.get("x-cache-saved-cost-usd"))
            return
        self.misses += status == "MISS"
        self.bypassed += status == "BYPASS"
        try:
            payload = response.json()
        except ValueError:
            return
        usage = payload.get("usage") if isinstance(payload, dict) else None
        if not isinstance(usage, dict):
            return
        # Chat's names, else the Responses API's.
        prompt = _int(usage.get("prompt_tokens", usage.get("input_tokens")))
        completion = _int(usage.get("completion_tokens", usage.get("output_tokens")))
        self.tokens_spent += prompt + completion
        # Priced as the model that answered: a fallback's answer names it in a header.
        model = (
            response.headers.get("x-upstream-model")
            or line.body.get("model")
            or payload.get("model")
        )
        try:
            self.cost_spent += models.get(str(model)).cost(prompt, completion)
        except NotFound:
            pass

    def report_lines(self, limit: int = 50) -> list[str]:
        """The plain-text summary printed at the end of a warm-up."""
        out = [
            f"lines {self.lines}: hits {self.hits}, misses {self.misses}, "
            f"coalesced {self.coalesced}, bypassed {self.bypassed}, errors {self.errors}",
            f"tokens: {self.tokens_spent:,} spent, {self.tokens_saved:,} saved",
            f"cost: ${self.cost_spent:f} spent, ${self.cost_saved:f} saved",
        ]
        for number, problem in sorted(self.failures)[:limit]:
            out.append(f"line {number}: {problem}")
        if self.errors > limit:
            out.append(f"... and {self.errors - limit} more failed lines")
        return out
