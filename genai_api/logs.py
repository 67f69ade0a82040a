"""Logging set-up for the CLI: one readable line per event, secrets never printed.

`RedactSecrets` sits on the one handler every logger reaches (ours, uvicorn's, the
libraries'), so a secret is masked whoever logs it, tracebacks included. `serve` applies
it in the parent and, through `cli.worker_app`, in every worker process it spawns.

What is never logged in the first place: request bodies (prompts) and headers. The access
log has method, path, status, cache result, model and latency only.
"""

from __future__ import annotations

import logging
import logging.config
import re
from typing import Any

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


_FORMAT = {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s", "datefmt": "%H:%M:%S"}
_QUIET = ("uvicorn.access", "httpx", "httpcore", "openai", "aiohttp.access")


def logging_config(level: str = "INFO") -> dict[str, Any]:
    """A `logging.config.dictConfig` schema: one redacting stderr handler on the root logger."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        # uvicorn sets `use_colors` on formatters with these two names when asked to.
        "formatters": {"default": dict(_FORMAT), "access": dict(_FORMAT)},
        "filters": {"redact": {"()": RedactSecrets}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["redact"],
                "stream": "ext://sys.stderr",
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


def setup_logging(level: str = "INFO") -> None:
    logging.config.dictConfig(logging_config(level))
