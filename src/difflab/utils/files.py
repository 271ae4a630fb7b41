"""Atomic file writes: write into a temp file beside the target, then os.replace it into place.

A reader (or a process restarted after a crash) sees either the old file or the complete new one, never a
partial write; a failed write leaves no temp file behind. The file gets the mode a plain open() would
give it (0666 less the umask), not the temp file's private 0600, so a run folder is readable by others
exactly when the user's umask says so.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def current_umask() -> int:
    """The process umask (read by setting and restoring it: os offers no read-only call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Call write(tmp_path) on a temp file in path's folder (same suffix, so format-by-suffix writers work),
    then rename it to `path`. Creates the folder. Returns `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike, obj, indent: int = 1) -> Path:
    """Write `obj` as JSON to `path` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")
