"""Ports for the servers tests and benchmarks start, picked so that nothing else takes them.

Why not `bind(("127.0.0.1", 0))` and hand the number on: the kernel picks that port from its
ephemeral range (/proc/sys/net/ipv4/ip_local_port_range) and takes it back at `close()`; until
the server binds it (a second or more for a Python process on a loaded machine), any outgoing
connection (a client to Redis, a gateway to its upstream) may get it as its source port, and
the server dies with "address already in use". So ports come from outside that range, which the
kernel never hands out on its own, and in blocks claimed with a lock file held for the life of
the process, so two test runs on one machine never pick the same port either. Each port is also
checked free by a bind (no SO_REUSEADDR: a TIME_WAIT left by an earlier server counts as busy).
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
import tempfile
import threading
from pathlib import Path
from typing import IO

BLOCK = 32
FIRST = 10_000  # below: registered ports that software on the machine may listen on
LAST = 65_535
_DEFAULT_RANGE = (32_768, 60_999)  # Linux's default ephemeral range

_guard = threading.Lock()
_pending: list[int] = []
_held: list[IO[bytes]] = []  # the claimed blocks' lock files: open until the process exits
_tried: set[int] = set()


def ephemeral_range() -> tuple[int, int]:
    """The kernel's ephemeral port range (first, last)."""
    try:
        first, last = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(first), int(last)
    except (OSError, ValueError):
        return _DEFAULT_RANGE


def _block_starts() -> list[int]:
    """Starts of the blocks outside the ephemeral range (all blocks if that range is everything)."""
    low, high = ephemeral_range()
    starts = list(range(FIRST, LAST - BLOCK + 2, BLOCK))
    outside = [s for s in starts if s + BLOCK - 1 < low or s > high]
    return outside or starts


def _lock(start: int) -> IO[bytes] | None:
    """The held lock file of the block at `start`, or None when another process holds it."""
    folder = Path(tempfile.gettempdir()) / f"genai-api-ports-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    handle = (folder / f"{start}.lock").open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def _claim_block() -> None:
    starts = [s for s in _block_starts() if s not in _tried]
    random.SystemRandom().shuffle(starts)  # two runs start their search in different places
    for start in starts:
        _tried.add(start)
        handle = _lock(start)
        if handle is not None:
            _held.append(handle)
            _pending.extend(range(start, start + BLOCK))
            return
    raise RuntimeError("no free block of ports left outside the ephemeral range")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port no server listens on now and nobody else will be handed: for a server about to
    start there (or, for an unreachable address, for nothing at all). Never the same twice."""
    with _guard:
        while True:
            if not _pending:
                _claim_block()
            port = _pending.pop(0)
            if _bindable(port):
                return port
