"""Keep freed heap memory for the next request instead of handing it back to the kernel.

An embeddings hit moves a few large buffers per request (64 x 1,536 vectors are ~400 KB as
float32 and ~530 KB as base64 JSON). glibc returns memory at the top of the heap to the
kernel once more than `M_TRIM_THRESHOLD` is free, and serves big allocations with fresh
`mmap`s; both thresholds adapt to about the size of one such buffer, so a worker hands its
memory back after nearly every batch and the next batch takes a page fault for each 4 KiB it
touches again: ~160 faults and ~0.5 ms of CPU per 64-input batch, measured with
`bench.profile_embeddings`. Fixed thresholds (64 MiB kept, `mmap` from 16 MiB) stop that;
RSS then stays at the high-water mark of the largest requests instead of dropping between
them, which is what a long-lived server process wants anyway.

Only glibc has `mallopt`; elsewhere (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("genai_api.malloc")

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
KEEP_FREE_BYTES = 64 << 20
MMAP_FROM_BYTES = 16 << 20


def keep_freed_memory() -> bool:
    """Set glibc's trim and mmap thresholds for this process; False where that is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    ok = bool(mallopt(M_TRIM_THRESHOLD, KEEP_FREE_BYTES)) and bool(
        mallopt(M_MMAP_THRESHOLD, MMAP_FROM_BYTES)
    )
    if not ok:
        log.debug("mallopt refused the thresholds; keeping the allocator's defaults")
    return ok
