"""Logging set-up for the CLI: one readable line per event, secrets never printed."""

from __future__ import annotations

import logging
import re

_SECRET = re.compile(r"(redis[s]?://[^:@/\s]*:)[^@\s]+@|(Bearer\s+)\S+|(sk-)[A-Za-z0-9_\-]{6,}")


class RedactSecrets(logging.Filter):
    """Masks passwords in URLs, bearer tokens and OpenAI-style keys in any log message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = _SECRET.sub(
            lambda m: (
                (m.group(1) or m.group(2) or m.group(3)) + "***" + ("@" if m.group(1) else "")
            ),
            message,
        )
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    )
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "httpx", "openai", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
