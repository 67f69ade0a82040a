"""The stderr handler `serve` logs through: access lines buffered, every other record at once.

Why: written through `logging`'s usual path, the one access line per request cost more than
the cache hit it reported on (~40 µs in-process, ~77 µs of CPU per request over HTTP: a
`LogRecord` with a walk up the stack for its caller, the redaction regex over the message, a
`strftime` and a flushed `write` per line, a system call each). So an access line is handed
over ready-made (`access`: `genai_api.http.access_log` formats it from its fields) and kept in
a buffer that is written in one `write`, at most `FLUSH_SECONDS` later, by a timer on the
event loop that served the request.

Every other record takes the usual path (its filters, RedactSecrets among them, and its
formatter) and is written at once, after the access lines pending: lines stay in order, and a
warning is never held back. What is pending is written when the buffer passes `MAX_PENDING`
lines, on `flush()` (the app's shutdown, and `logging.shutdown` at interpreter exit, which
runs after uvicorn's SIGTERM handling, in the parent and in every worker), and by the next
access line should a timer never fire (its event loop closed first).

Thread safety: access lines are appended without the lock (a list append is atomic) and
writers take it; a writer writes the lines it counted and removes exactly those, so a line
appended meanwhile stays for the next write.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TextIO

FLUSH_SECONDS = 0.05  # pending access lines are written within this (plus the loop's lag)
MAX_PENDING = 2048  # lines: past this the buffer is written at once


class BufferedStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """A `StreamHandler` (stderr unless told) with a buffer for ready-made access lines.

    `json`: whether this handler writes JSON lines (its formatter is `JsonFormatter`); the
    access lines handed to it must match.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        json: bool = False,
        flush_seconds: float = FLUSH_SECONDS,
    ) -> None:
        super().__init__(stream)
        self.json = json
        self.flush_seconds = flush_seconds
        self.pending: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0  # wall-clock time by which the armed timer writes

    def access(self, line: str, now: float) -> None:
        """Queue one finished line (with its newline); `now` is `time.time()`."""
        pending = self.pending
        pending.append(line)
        if self._timer is None:
            self._arm(now)
        elif now > self._due + 1.0 or len(pending) > MAX_PENDING:
            self.flush()  # a timer whose loop is gone (or a burst): write now
            self._arm(now)

    def _arm(self, now: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on an event loop: nothing would fire the timer
            self._timer = None
            self.flush()
            return
        self._timer = loop.call_later(self.flush_seconds, self._fire)
        self._due = now + self.flush_seconds

    def _fire(self) -> None:
        self._timer = None
        self.flush()

    def emit(self, record: logging.LogRecord) -> None:
        """Any record but an access line: formatted as usual, written now with what waits."""
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self.pending.append(line)
        self.flush()

    def flush(self) -> None:
        """Write every line pending, in one write."""
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            pending = self.pending
            count = len(pending)
            if not count:
                return
            text = "".join(pending[:count])
            del pending[:count]
            try:
                self.stream.write(text)
                self.stream.flush()
            except Exception:  # a closed stderr: dropped, as logging does
                pass

    def close(self) -> None:
        self.flush()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().close()
