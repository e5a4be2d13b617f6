"""Keep a long-running process's resident memory near what it uses, not what it once peaked at.

glibc keeps freed heap pages (and one arena per thread that ever allocated) for reuse, so after a
busy cycle a daemon's RSS stays at the cycle's peak.  Both calls are no-ops where glibc is absent.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_ARENA_MAX = -8  # mallopt parameter (glibc malloc.h)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def limit_arenas(arenas: int = 2) -> bool:
    """Cap malloc arenas (threads share them); call before starting threads.  True when applied."""
    libc = _libc()
    return bool(libc and libc.mallopt(M_ARENA_MAX, arenas))


def release_free_memory() -> bool:
    """Return freed heap pages to the operating system.  True when some memory was released."""
    libc = _libc()
    return bool(libc and libc.malloc_trim(0))
