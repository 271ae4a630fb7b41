"""One progress display for every long job: a rich bar on a terminal, a plain line log elsewhere.

Both show the same figures, computed here rather than by rich so that they are true and testable:

    rate = (completed - start) / (now - t0)               units per second since this run began
    eta  = min((total - completed) / rate,                the steps still to do at that rate,
               deadline_s - (now - t0))                    the time budget still left (when one is given)

`start` is where a resumed job picks up: its units count towards the bar, not towards the rate. With a
time budget (`--minutes`) the ETA is the sooner of the two ends, not the step budget alone ("eta
55:21:49" in a one-minute run, issue 19). Off a terminal (a pipe, a log file, CI) it writes one plain
line every `log_every_s` seconds or every tenth of the total, whichever comes first, and a last line on
close. Text is printed literally: a path like `runs/[x]` is not read as rich markup.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress", "format_duration"]


def format_duration(seconds: float | None) -> str:
    """'m:ss' under an hour, else 'h:mm:ss'; '-' when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = max(0, round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _format_field(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class Progress:
    """Progress of one job over `total` units (None: unknown), as a context manager.

    enabled: False makes every method a no-op (other ranks, --quiet). stream: where to write
    (default sys.stdout); a rich bar when it is a terminal, else plain lines. deadline_s: the job's time
    budget in seconds from now, if it has one. start: units already done (a resumed run).
    clock and log_every_s exist for tests and callers with other needs.
    """

    def __init__(self, total: int | None, description: str, unit: str = "step", *, enabled: bool = True,
                 stream: TextIO | None = None, deadline_s: float | None = None, start: int = 0,
                 clock: Callable[[], float] = time.monotonic, log_every_s: float = 10.0):
        self.total, self.description, self.unit = total, description, unit
        self.enabled, self.deadline_s, self.start = enabled, deadline_s, start
        self.completed, self.fields = start, {}
        self.clock, self.log_every_s = clock, log_every_s
        self.stream = sys.stdout if stream is None else stream
        self.t0 = clock()
        self._last_line_t, self._last_line_n = self.t0, start
        self._bar = self._task = None
        self._closed = not enabled
        if enabled and _isatty(self.stream):
            self._start_bar()

    # ---- the figures ----------------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.clock() - self.t0

    def rate(self) -> float | None:
        """Units per second since this run began; None before the first unit or the first tick."""
        dt, done = self.elapsed(), self.completed - self.start
        return done / dt if done > 0 and dt > 0 else None

    def eta(self) -> float | None:
        """Seconds to the end: the sooner of the remaining units at the current rate and the time left."""
        ends = []
        rate = self.rate()
        if self.total is not None and rate is not None:
            ends.append(max(0, self.total - self.completed) / rate)
        if self.deadline_s is not None:
            ends.append(max(0.0, self.deadline_s - self.elapsed()))
        return min(ends) if ends else None

    def summary(self) -> str:
        """'12/100 (12%) loss=0.123 3.40 step/s elapsed 0:04 eta 0:26' (the bar shows the count itself)."""
        count = f"{self.completed}" if self.total is None else (
            f"{self.completed}/{self.total} ({100 * self.completed / max(self.total, 1):.0f}%)")
        return f"{count} {self._stats()}"

    def _stats(self) -> str:
        rate = self.rate()
        parts = [f"{k}={_format_field(v)}" for k, v in list(self.fields.items())]  # list: the bar reads it
        parts.append("-" if rate is None else f"{rate:.3g} {self.unit}/s")
        parts.append(f"elapsed {format_duration(self.elapsed())}")
        parts.append(f"eta {format_duration(self.eta())}")
        return " ".join(parts)

    # ---- updates --------------------------------------------------------------------------------
    def advance(self, n: int = 1, **fields) -> None:
        """Count n more units; `fields` (e.g. loss=0.12) replace the shown values of those names."""
        if self._closed:
            return
        self.completed += n
        self.fields.update(fields)
        if self._bar is not None:
            self._bar.update(self._task, completed=self.completed)
        elif self._line_due():
            self._write_line()

    def close(self) -> None:
        """Stop the bar, or write the last line; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.update(self._task, completed=self.completed)
            self._bar.stop()
        elif self._last_line_n != self.completed or self.completed == self.start:
            self._write_line()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- the two displays -----------------------------------------------------------------------
    def _line_due(self) -> bool:
        now = self.clock()
        tenth = None if self.total is None else max(1, self.total) / 10
        return (now - self._last_line_t >= self.log_every_s
                or (tenth is not None and self.completed - self._last_line_n >= tenth)
                or (self.total is not None and self.completed >= self.total))

    def _write_line(self) -> None:
        self._last_line_t, self._last_line_n = self.clock(), self.completed
        self.stream.write(f"{self.description} {self.summary()}\n")
        self.stream.flush()

    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, ProgressColumn, TextColumn
        from rich.progress import Progress as RichProgress
        from rich.text import Text

        owner = self

        class Stats(ProgressColumn):  # recomputed at every refresh: elapsed and ETA move between steps
            def render(self, task) -> Text:
                return Text(owner._stats())

        count = MofNCompleteColumn() if self.total is not None else TextColumn("{task.completed}")
        self._bar = RichProgress(
            TextColumn("{task.description}", markup=False), BarColumn(), count, Stats(),
            console=Console(file=self.stream), transient=False,
        )
        self._task = self._bar.add_task(self.description, total=self.total, completed=self.start)
        self._bar.start()


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False
