"""One writer per run folder: RUN/.lock, held by the process that trains into RUN.

Two `difflab train --resume` on one folder would delete each other's checkpoints while they are
written and append the same steps twice to the log. The lock is a POSIX record lock
(fcntl.lockf) on RUN/.lock, which the kernel releases when its process ends, however it ends: a lock
left by a process that died (kill -9, a crash, a reboot) is never in the way. The file holds the
holder's pid, host and start time, so a refusal names the process to wait for, and a process that
takes over a lock left by a dead one says so (a clean release empties the file). Forked children (DataLoader workers) do not inherit
the lock. Within one process the lock is re-entrant: a job that holds it can run a Trainer, which
takes it again.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from pathlib import Path

from difflab.utils.errors import DifflabError

try:
    import fcntl
except ImportError:  # Windows: runs there are not locked (said so when one starts)
    fcntl = None

LOCK_NAME = ".lock"
_HELD: dict[str, list] = {}  # resolved lock path -> [open file, nesting depth] of this process


class _Unlockable(Exception):
    """lockf failed: args (the open file, the OSError)."""


class RunLocked(DifflabError):
    """Another process trains into the run folder."""


def _holder_text() -> str:
    return json.dumps({
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join(sys.argv)[:500],
    })


def _describe(info: dict) -> str:
    return (f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started {info.get('started', '?')}"
            + (f": {info['command']}" if info.get("command") else ""))


def _read(f) -> dict:
    f.seek(0)
    try:
        info = json.loads(f.read() or "{}")
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, OverflowError):
        return True  # it exists under another user, or the record is unreadable: assume alive
    return True


class RunLock:
    """`with RunLock(run_dir):` holds RUN/.lock, or raises RunLocked naming the holder.

    note: after entering, a line about a lock taken over from a process that ended (else None).
    """

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.key = str(self.path.resolve())
        self.note: str | None = None

    def acquire(self) -> RunLock:
        if self.key in _HELD:  # re-entered by the process that holds it
            _HELD[self.key][1] += 1
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            f = self._open_locked()
        except _Unlockable as e:
            f, e = e.args
            if e.errno not in (errno.EACCES, errno.EAGAIN):  # no locks here (a network file system, Windows)
                self.note = (f"cannot lock {self.path} ({e.strerror}): make sure no other process trains into "
                             f"{self.path.parent} at the same time")
                _HELD[self.key] = [f, 1]
                return self
            info = _read(f)
            f.close()
            raise RunLocked(
                f"{self.path.parent} is in use by another difflab process ({_describe(info)}): wait for it to "
                "finish or stop it (Ctrl-C saves its checkpoint), then run again; two processes training into "
                "one folder would overwrite each other's checkpoints"
            ) from None
        previous = _read(f)
        if previous.get("pid") not in (None, os.getpid()):  # a holder that ended without releasing it
            state = "which is no longer running" if not _alive(previous["pid"]) else "which no longer holds it"
            where = "" if previous.get("host") == socket.gethostname() else " (another host)"
            self.note = (f"took over the lock of {self.path.parent} left by {_describe(previous)}{where}, {state}")
        f.seek(0)
        f.truncate()
        f.write(_holder_text())
        f.flush()
        os.fsync(f.fileno())
        _HELD[self.key] = [f, 1]
        return self

    def _open_locked(self, attempts: int = 5):
        """The lock file, open and locked. A refused run deletes its own .lock while holding it, so a lock
        taken on a file that is no longer at self.path locks nothing: check the inode and try again."""
        for _ in range(attempts):
            f = open(self.path, "a+")  # noqa: SIM115 - kept open while the lock is held
            try:
                if fcntl is None:
                    raise OSError(errno.ENOSYS, "no fcntl on this platform")
                fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                raise _Unlockable(f, e) from None
            try:
                if os.stat(self.path).st_ino == os.fstat(f.fileno()).st_ino:
                    return f
            except FileNotFoundError:
                pass
            f.close()  # locked a file that was unlinked meanwhile
        raise RunLocked(f"{self.path} keeps being replaced by another process: make sure only one difflab "
                        f"process trains into {self.path.parent}, then run again")

    def release(self) -> None:
        held = _HELD.get(self.key)
        if held is None:
            return
        held[1] -= 1
        if held[1] == 0:
            del _HELD[self.key]
            held[0].truncate(0)  # a clean release leaves no record: a record means its holder died
            held[0].close()  # closing the file releases the lock

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
