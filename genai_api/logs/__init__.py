"""Logging set-up for the CLI: one readable line per event, secrets never printed.

`RedactSecrets` sits on the one handler every logger reaches (ours, uvicorn's, the
libraries'), so a secret is masked whoever logs it, tracebacks included. `serve` applies
it in the parent and, through `cli.worker_app`, in every worker process it spawns. That
handler (`genai_api.logs.sink.BufferedStderr`) writes every record at once except the access
lines, which it buffers for up to 50 ms (they would otherwise cost more than a cache hit).

What is never logged in the first place: request bodies (prompts) and headers. The access
log has method, path, status, cache result, model and latency only, and its client-chosen
text (path, model) is redacted where it is formatted (`genai_api.http.access_log`).

`RepeatLimit` sits on the same handler: the same warning (logger, level and message
template, whatever its arguments) is written at most once per `REPEAT_SECONDS`; the next one
after that says how many were held back. A fault that hits every request (a full Redis
refusing each write, an upstream down) is a few lines, not thousands: in an SRE drill a
full Redis wrote ~2,000 WARNING lines in 17 s. Records below WARNING pass untouched, the
access log above all (one line per request, never limited).

`LOG_FORMAT=json` writes one JSON object per line instead (`JsonFormatter`), for log
shippers: `time` (ISO 8601, UTC), `level`, `logger`, then `message` (and `exc_info`), or an
access line's own fields.
"""

from __future__ import annotations

import logging
import logging.config
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson

_SECRET = re.compile(
    # 1: the password of any URL with credentials (redis://:pw@host, https://u:pw@host)
    r"(\b[a-z][a-z0-9+.\-]*://[^:@/\s]*:)[^@\s/]+@"
    # 2: a bearer token wherever it appears
    r"|(\bbearer\s+)[^\s\"',;]+"
    # 3: OpenAI-style keys
    r"|(\bsk-)[a-z0-9_\-]{6,}"
    # 4: key=value / "key": "value" pairs named like a secret
    r"|((?:password|passwd|api[_-]?key|secret|authorization)[\"']?\s*[:=]\s*[\"']?)"
    r"(?:(?:bearer|basic|token)\s+)?[^\s\"',;&]+",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """`text` with every secret the patterns know replaced by `***`.

    >>> redact("redis://:hunter2@redis:6379/0")
    'redis://:***@redis:6379/0'
    """
    return _SECRET.sub(_mask, text)


def _mask(match: re.Match[str]) -> str:
    url, bearer, sk, named = match.group(1, 2, 3, 4)
    if url:
        return f"{url}***@"
    return f"{bearer or sk or named}***"


class RedactSecrets(logging.Filter):
    """Masks passwords in URLs, bearer tokens, API keys and `password=`-style pairs."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            # Formatters reuse `exc_text` when set, so the traceback is printed redacted.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


REPEAT_SECONDS = 10.0
_LAST_WORD = "held_back_at_shutdown"  # marks `flush_logs`'s reports: never held back themselves
_REPEATS_KEPT = 1024  # distinct warnings remembered; the memo starts over when full


class RepeatLimit(logging.Filter):
    """The same WARNING-or-worse record at most once per `seconds` (see the module docstring).

    Same means: the same logger, level and message template (`record.msg`, before its
    arguments are put in), so "cache unavailable, bypassing: %s" is one warning whatever the
    reason it names. The first record after a quiet spell passes, and says how many like it
    were held back since the last one written: ``... (1999 more like this in the last 10 s)``.
    """

    def __init__(
        self, seconds: float = REPEAT_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.seconds = seconds
        self.now = clock
        self._seen: dict[tuple[str, int, str], list[float]] = {}  # -> [written at, held back]
        self._lock = threading.Lock()  # filters run outside the handler's lock

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or getattr(record, _LAST_WORD, False):
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self.now()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < self.seconds:
                seen[1] += 1
                return False
            if seen is None and len(self._seen) >= _REPEATS_KEPT:
                self._seen.clear()
            self._seen[key] = [now, 0]
        if seen is not None and seen[1]:
            held, since = int(seen[1]), now - seen[0]
            record.msg = f"{record.getMessage()} ({held} more like this in the last {since:.0f} s)"
            record.args = None
        return True

    def held_back(self) -> list[tuple[str, int, str, int]]:
        """(logger, level, template, count) of what was held back since last written, and
        forget it: for a last word at shutdown (`flush_logs`)."""
        with self._lock:
            held = [(*key, int(seen[1])) for key, seen in self._seen.items() if seen[1]]
            for seen in self._seen.values():
                seen[1] = 0
        return held


def iso_second(second: int) -> str:
    """A Unix second as ISO 8601 in UTC, to the second: ``2026-12-04T15:39:07``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


class JsonFormatter(logging.Formatter):
    """One JSON object per record (orjson), for log shippers; see the module docstring."""

    def format(self, record: logging.LogRecord) -> str:
        created = record.created
        second = int(created)
        doc: dict[str, Any] = {
            "time": f"{iso_second(second)}.{int((created - second) * 1000):03d}Z",
            "level": record.levelname,
            "logger": record.name,
        }
        fields = getattr(record, "access", None)
        if isinstance(fields, dict):  # an access line logged as a record: its own fields
            doc.update(fields)
        else:
            doc["message"] = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exc_info"] = record.exc_text
        if record.stack_info:
            doc["stack_info"] = record.stack_info
        return orjson.dumps(doc, default=str).decode()


_FORMAT = {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s", "datefmt": "%H:%M:%S"}
_QUIET = ("uvicorn.access", "httpx", "httpcore", "openai", "aiohttp.access")
FORMATS = ("text", "json")


def logging_config(level: str = "INFO", fmt: str = "text") -> dict[str, Any]:
    """A `logging.config.dictConfig` schema: one redacting stderr handler on the root logger,
    writing `fmt` (`text` or `json`) lines."""
    json = fmt == "json"
    formatter: dict[str, Any] = {"()": JsonFormatter} if json else dict(_FORMAT)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        # uvicorn sets `use_colors` on formatters with these two names when asked to.
        "formatters": {"default": formatter, "access": dict(formatter)},
        "filters": {"repeats": {"()": RepeatLimit}, "redact": {"()": RedactSecrets}},
        "handlers": {
            "default": {
                "class": "genai_api.logs.sink.BufferedStderr",
                "formatter": "default",
                # Repeats first: a record held back is not worth redacting.
                "filters": ["repeats", "redact"],
                "stream": "ext://sys.stderr",
                "json": json,
            }
        },
        "root": {"handlers": ["default"], "level": level.upper()},
        "loggers": {
            # uvicorn's own loggers reach the root handler (and its filter) by propagation.
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            **{name: {"level": "WARNING"} for name in _QUIET},
        },
    }


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    logging.config.dictConfig(logging_config(level, fmt))


def flush_logs() -> None:
    """Write what the root logger's handlers hold (the buffered access lines), and say how
    many warnings were held back since the last of their kind was written: at shutdown."""
    for handler in logging.getLogger().handlers:
        for limit in handler.filters:
            if isinstance(limit, RepeatLimit):
                for name, level, template, count in limit.held_back():
                    logging.getLogger(name).log(
                        level,
                        "%d more like %r were held back before shutdown",
                        count,
                        template,
                        extra={_LAST_WORD: True},
                    )
        handler.flush()
