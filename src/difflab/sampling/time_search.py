"""Greedy search of a grid's interior times against a sample-quality score (Song et al. 2023, "Consistency
Models", sec. 6: the time points of multistep consistency sampling are chosen by a greedy search on FID,
one intermediate time at a time, with the others held fixed).

With a grid t_0 > t_1 > ... > t_n (n steps), the first time t_0 (where the sampler starts) and the last t_n
(the data end) stay; the interior times t_1 .. t_{n-1} are searched by coordinate descent: for i = 1 .. n-1
each candidate t_i' = t_{i+1} + f (t_{i-1} - t_{i+1}), f in `fractions`, is scored with the others fixed, and
the best grid so far is kept (a candidate replaces it only when it scores strictly lower); `rounds` passes,
and a grid scored once is not scored again.
The grid stays strictly decreasing by construction (0 < f < 1). The search knows nothing of samplers or
data: `score(times) -> float` (lower is better) is the caller's, e.g. the FDD of n samples drawn on the grid
from a fixed seed (difflab.jobs.fit_schedule), so every candidate meets the same noises and a difference
between two candidates is not one of noise draws. That score is still an estimate: select on one seed and
report on others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor

from difflab.sampling.grids import check_grid
from difflab.utils.errors import DifflabError

FRACTIONS = (0.2, 0.35, 0.5, 0.65, 0.8)


@dataclass(frozen=True)
class TimeSearch:
    """times: the best grid found (float64); score: its score; history: every (times, score) scored, the start
    first, in order."""

    times: Tensor
    score: float
    history: list[tuple[list[float], float]]

    @property
    def evaluations(self) -> int:
        return len(self.history)


def check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    """Fractions of the neighbours' interval: at least one, each strictly inside (0, 1)."""
    out = tuple(float(f) for f in fractions)
    if not out or not all(0.0 < f < 1.0 for f in out):
        raise DifflabError(f"the time search's fractions must lie strictly between 0 and 1; got {list(fractions)}")
    return out


def _key(times: Tensor) -> tuple[float, ...]:
    return tuple(round(float(t), 12) for t in times)


def greedy_time_search(score: Callable[[Tensor], float], start, *, rounds: int = 2,
                       fractions: Sequence[float] = FRACTIONS, log: Callable[[str], None] | None = None) -> TimeSearch:
    """Coordinate-wise search of the interior times of `start` (a descending grid of n + 1 >= 3 times) that
    minimizes `score` (module docstring); `rounds` passes over t_1 .. t_{n-1}."""
    times = check_grid(start).clone()
    if times.numel() < 3:
        raise DifflabError("a 1-step grid has no interior time to search: search a grid of 2 or more steps")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise DifflabError(f"the time search needs rounds >= 1; got {rounds!r}")
    fractions = check_fractions(fractions)
    best = float(score(times))
    history = [(times.tolist(), best)]
    seen = {_key(times)}
    for _ in range(rounds):
        for i in range(1, times.numel() - 1):
            hi, lo = float(times[i - 1]), float(times[i + 1])
            for f in fractions:
                cand = times.clone()
                cand[i] = lo + f * (hi - lo)
                if _key(cand) in seen:  # scored already (the current grid, or a candidate of an earlier pass)
                    continue
                seen.add(_key(cand))
                value = float(score(cand))
                history.append((cand.tolist(), value))
                if log is not None:
                    log(f"t_{i} = {float(cand[i]):.4f}: {value:.4g} (best {min(best, value):.4g})")
                if value < best:
                    best, times = value, cand
    return TimeSearch(times, best, history)
