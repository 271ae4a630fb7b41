"""Keep freed CPU memory for reuse: glibc malloc settings for every `difflab` command.

torch allocates CPU tensors with glibc's malloc, which serves every block above its mmap threshold
(32 MiB at most by default) with a fresh mmap and returns it to the kernel on free. A loop that allocates
a large temporary per iteration (the streamed LS/ELS posteriors, the bespoke solver fit's descent) then
pays a page fault per 4 KiB page on every iteration: the streamed LS machine at 2000 shapes images spent
22.3 of its 41.8 s in the kernel (benchmarks/allocator.py, docs/benchmarks.md "What freed memory costs").
With large blocks taken from the heap and the heap never trimmed, the freed pages are reused.

The cost is memory: the resident set does not shrink within a command, and blocks of changing sizes leave
holes in the heap, so the peak grows (measured 1.4x on a short bespoke fit, 2x on the small LS call, whose
256 MiB heap pad is a large part of it). `DIFFLAB_MALLOC=system` keeps glibc's defaults, for a job that
needs its memory more than its speed. A launcher's own choice is kept too: nothing is changed when any of
MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_, MALLOC_TOP_PAD_ or GLIBC_TUNABLES is set, and nothing
happens off glibc (macOS, Windows, musl).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 2**30  # blocks up to 1 GiB come from the heap, so they can be reused
TRIM_THRESHOLD = 2**31 - 1  # never give the top of the heap back
TOP_PAD = 2**28  # grow the heap 256 MiB at a time
LAUNCHER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")


def keep_freed_memory() -> bool:
    """Set glibc's mmap threshold, trim threshold and top pad as above; True when they were set
    (False off glibc, with DIFFLAB_MALLOC=system, or when a launcher set malloc itself)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if os.environ.get("DIFFLAB_MALLOC", "").strip().lower() == "system":
        return False
    if any(name in os.environ for name in LAUNCHER_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD))
    return all(mallopt(param, value) == 1 for param, value in settings)
