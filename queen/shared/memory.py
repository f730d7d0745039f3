"""Memory a process has freed goes back to the system (glibc's malloc_trim; elsewhere nothing happens).

Job output passes through the queen and the drone as many strings of tens of KiB to a few MiB.
CPython frees them with free(), and glibc keeps what is freed for reuse: only a free top of its
heap goes back to the system by itself, the rest stays resident, scattered between the few objects
still alive. So a queen that stored 240 MB of output stayed some 30 to 60 MB above its baseline for
good. `trim()` (``malloc_trim(0)``) gives back every free page, in the main heap and in the threads'
arenas (libzmq's I/O thread allocates the frames it receives): 1 to 3 ms for a heap of tens of MB,
so call it after a large amount of memory was freed at once, not per allocation.

Fixing glibc's thresholds at start (mallopt M_MMAP_THRESHOLD, M_TRIM_THRESHOLD) was measured too and
left out: with trims and the drones' send window it changed neither the peak nor what stays.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from typing import Any


@functools.cache
def _glibc() -> Any:
    """glibc, or None (another OS or C library: musl has no malloc_trim)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None


def trim() -> None:
    """Give the system back the pages malloc holds free."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
