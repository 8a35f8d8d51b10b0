"""How many malloc arenas a service process keeps (glibc).

glibc gives a thread that finds the arenas busy an arena of its own, up to eight per core, and
seldom hands an arena's freed memory back. The API process runs a pool of request threads, so
its resident memory crept up by about 110 bytes an upload under a steady load (a 30-minute soak:
+6 MiB), although no Python object grew. Two arenas keep it within ~0.5 MiB over 12 minutes of
the same load (``benchmarks/RESULTS.md``, "Soak"), at no measured cost in throughput.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

ARENAS = 2
_M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap this process's arenas (``mallopt``) and, through ``MALLOC_ARENA_MAX``, those of the
    processes it starts. A value already in the environment is the operator's: it is kept.
    Returns whether the C library took the cap (False off glibc: nothing changes there)."""
    os.environ.setdefault("MALLOC_ARENA_MAX", str(arenas))
    try:
        wanted = int(os.environ["MALLOC_ARENA_MAX"])
    except ValueError:
        return False  # glibc ignores a value that is not a number; so does this
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, wanted))
