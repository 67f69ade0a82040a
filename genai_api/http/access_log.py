"""The access line: one per answer, with method, path, status, cache result, model and latency.

    15:39:07 INFO    genai_api.access: POST /v1/chat/completions 200 cache=HIT model=m 0.4ms
    {"time":"2026-12-04T15:39:07.123Z","level":"INFO","logger":"genai_api.access",
     "method":"POST","path":"/v1/chat/completions","status":200,"cache":"HIT",
     "model":"m","ms":0.4}                                (LOG_FORMAT=json, on one line)

Why not `log.info(...)`: that path cost more than a cache hit (see `genai_api.logs.sink`). When
the access logger's records reach only `serve`'s own handler (`BufferedStderr`, installed by
`genai_api.logs.setup_logging`), the line is formatted here, its timestamp once a second, and
handed to that handler's buffer: a few microseconds. Otherwise (pytest's `caplog`, a
handler someone added) it is logged as an ordinary record, whose `access` attribute carries
the same fields for `JsonFormatter`.

Never a secret nor a prompt: the method comes from the HTTP parser, the status and latency
are numbers, the cache result is the gateway's own header. The path (without its query
string, which is never logged) and the model are client-chosen text: each is redacted
(`genai_api.logs.redact`, as RedactSecrets would) and its control characters escaped, so a
`%0A` cannot forge a line, once per distinct value (remembered, bounded).
"""

from __future__ import annotations

import logging
import time

import orjson

from genai_api.logs import iso_second, redact
from genai_api.logs.sink import BufferedStderr

MESSAGE = "%s %s %d cache=%s model=%s %.1fms"
REMEMBERED = 1024  # distinct cleaned values kept; the memo starts over when full


class AccessLog:
    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("genai_api.access")
        self._clean: dict[str, str] = {}  # client text -> redacted and printable
        self._quoted: dict[str, str] = {}  # client text -> that, as a JSON string
        self._second = -1  # the Unix second the stamps below are for
        self._clock = ""  # its local time, HH:MM:SS (the text format's)
        self._iso = ""  # its ISO 8601 UTC time (the JSON format's)

    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def write(
        self, method: str, path: str, status: int, cache: str | None, model: str | None, ms: float
    ) -> None:
        """Log one answer (`ms`: its latency in milliseconds)."""
        sink = self._sink()
        if sink is None:
            self._record(method, path, status, cache, model, ms)
            return
        now = time.time()
        second = int(now)
        if second != self._second:
            self._tick(second)
        if sink.json:
            # Composed, not dumped: the strings are JSON already (remembered), the rest numbers.
            q = self._quoted
            sink.access(
                f'{{"time":"{self._iso}.{int((now - second) * 1000):03d}Z","level":"INFO",'
                f'"logger":"genai_api.access","method":{q.get(method) or self._quote(method)},'
                f'"path":{q.get(path) or self._quote(path)},"status":{status},'
                f'"cache":{(q.get(cache) or self._quote(cache)) if cache else "null"},'
                f'"model":{(q.get(model) or self._quote(model)) if model else "null"},'
                f'"ms":{ms:.1f}}}\n',
                now,
            )
            return
        c = self._clean
        sink.access(
            f"{self._clock} INFO    genai_api.access: {c.get(method) or self._cleaned(method)} "
            f"{c.get(path) or self._cleaned(path)} {status} cache={cache or '-'} "
            f"model={(c.get(model) or self._cleaned(model)) if model else '-'} {ms:.1f}ms\n",
            now,
        )

    def _record(
        self, method: str, path: str, status: int, cache: str | None, model: str | None, ms: float
    ) -> None:
        """The line as an ordinary record, for whatever handlers it reaches."""
        method, path = self._cleaned(method), self._cleaned(path)
        model = self._cleaned(model) if model else None
        fields = {
            "method": method,
            "path": path,
            "status": status,
            "cache": cache,
            "model": model,
            "ms": round(ms, 1),
        }
        self.logger.info(
            MESSAGE, method, path, status, cache or "-", model or "-", ms, extra={"access": fields}
        )

    def _sink(self) -> BufferedStderr | None:
        """The one handler the access logger's records reach, if it is `BufferedStderr`
        taking INFO (a walk of two or three loggers: any handler added later is seen)."""
        logger: logging.Logger | None = self.logger
        found: BufferedStderr | None = None
        while logger is not None:
            for handler in logger.handlers:
                if found is not None or type(handler) is not BufferedStderr:
                    return None
                found = handler
            if not logger.propagate:
                break
            logger = logger.parent
        if found is None or found.level > logging.INFO:
            return None
        return found

    def _tick(self, second: int) -> None:
        self._second = second
        self._clock = time.strftime("%H:%M:%S", time.localtime(second))
        self._iso = iso_second(second)

    def _cleaned(self, text: str) -> str:
        """`text` redacted and printable, remembered for the next line that has it."""
        value = printable(redact(text))
        _remember(self._clean, text, value)
        return value

    def _quote(self, text: str) -> str:
        """`_cleaned(text)` as a JSON string, remembered."""
        value = orjson.dumps(redact(text)).decode()  # JSON escapes every control character
        _remember(self._quoted, text, value)
        return value


def _remember(memo: dict[str, str], key: str, value: str) -> None:
    if len(memo) >= REMEMBERED:
        memo.clear()
    memo[key] = value


def printable(text: str) -> str:
    """`text`, with control and other non-printable characters backslash-escaped."""
    if text.isprintable():
        return text
    return text.encode("unicode_escape").decode("ascii")
