"""Logging set-up for the CLI: one readable line per event, secrets never printed.

`RedactSecrets` sits on the one handler every logger reaches (ours, uvicorn's, the
libraries'), so a secret is masked whoever logs it, tracebacks included. `serve` applies
it in the parent and, through `cli.worker_app`, in every worker process it spawns. That
handler (`genai_api.logs.sink.BufferedStderr`) writes every record at once except the access
lines, which it buffers for up to 50 ms (they would otherwise cost more than a cache hit).

What is never logged in the first place: request bodies (prompts) and headers. The access
log has method, path, status, cache result, model and latency only, and its client-chosen
text (path, model) is redacted where it is formatted (`genai_api.http.access_log`).

`LOG_FORMAT=json` writes one JSON object per line instead (`JsonFormatter`), for log
shippers: `time` (ISO 8601, UTC), `level`, `logger`, then `message` (and `exc_info`), or an
access line's own fields.
"""

from __future__ import annotations

import logging
import logging.config
import re
import time
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
        "filters": {"redact": {"()": RedactSecrets}},
        "handlers": {
            "default": {
                "class": "genai_api.logs.sink.BufferedStderr",
                "formatter": "default",
                "filters": ["redact"],
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
    """Write what the root logger's handlers hold (the buffered access lines): at shutdown."""
    for handler in logging.getLogger().handlers:
        handler.flush()
