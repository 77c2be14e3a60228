"""One malloc arena for a serving process (glibc).

glibc gives each thread that allocates its own arena: the pyreqwest runtime's thread, the SQLite
connections' threads and the worker threads each grow a heap of their own, ~1.5 MB of RSS in all after the
bench's load.  The gateway's threads rarely allocate at the same moment (the event loop holds the GIL), so
one arena costs no measurable throughput (docs/performance.md, session 11).  An operator's own
``MALLOC_ARENA_MAX`` wins; elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import os

M_ARENA_MAX = -8  # mallopt's parameter number in glibc's <malloc.h>


def one_arena() -> bool:
    """Cap malloc at one arena from now on; False when ``MALLOC_ARENA_MAX`` is set or there is no mallopt."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False
    return bool(mallopt(M_ARENA_MAX, 1))
