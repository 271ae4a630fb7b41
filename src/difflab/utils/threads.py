"""How many CPU threads torch uses: one deliberate default for every command (issue 19).

The default is one thread. On two cores shared with other jobs, torch's default (one OpenMP thread per
core) trained digits 12x and toy2d 19x slower than one thread
(benchmarks/threads.py, docs/benchmarks.md "Threads"): the threads of each op spin waiting for siblings
that the kernel has descheduled. The small presets gain little from more threads even on an idle machine;
larger models on an idle many-core machine do, and take `--threads N`. OMP_NUM_THREADS, when set,
is the default instead, so a launcher's choice is kept.
"""

from __future__ import annotations

import os

import torch

from difflab.utils.errors import DifflabError

DEFAULT_THREADS = 1


def default_threads() -> int:
    """OMP_NUM_THREADS when it is set to a positive integer, else DEFAULT_THREADS."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(env) if env.isdigit() and int(env) >= 1 else DEFAULT_THREADS


def set_threads(threads: int | None = None) -> int:
    """torch.set_num_threads(threads), None meaning default_threads(); returns the count in use."""
    if threads is None:
        threads = default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise DifflabError(f"--threads must be a whole number >= 1 (CPU threads for torch); got {threads!r}")
    torch.set_num_threads(threads)
    return torch.get_num_threads()
