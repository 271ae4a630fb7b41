"""What every editing method shares: input checks, the grid cut at a time, and the result type."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from difflab.process.base import NoiseProcess
from difflab.sampling import DEFAULT_SCHEDULE, default_schedule, make_grid
from difflab.sampling.fitted import FittedGrid
from difflab.utils.errors import DifflabError
from difflab.utils.seeding import make_generator
from difflab.utils.tensors import f64


class EditResult(NamedTuple):
    """x: the edited batch; nfe: every denoiser call made (guidance counted as in difflab.sample);
    times: the grid walked (for RePaint the base grid, walked resample times per block)."""

    x: Tensor
    nfe: int
    times: Tensor


def check_image(x, what: str = "the input") -> Tensor:
    if not isinstance(x, Tensor) or x.ndim < 2 or x.shape[0] < 1 or not x.is_floating_point():
        raise DifflabError(f"{what} must be a floating-point batch tensor (B, ...); got "
                           f"{type(x).__name__}{tuple(x.shape) if isinstance(x, Tensor) else ''}")
    if not bool(torch.isfinite(x).all()):
        raise DifflabError(f"{what} holds NaN or inf values")
    return x


def check_strength(strength) -> float:
    """SDEdit's strength: the time t in [0, 1] the input is noised to (0 keeps it, 1 ignores it)."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 <= strength <= 1.0:
        raise DifflabError(f"strength must be a number in [0, 1] (0 returns the input, 1 ignores it); got {strength!r}")
    return float(strength)


def snap_time(process: NoiseProcess, t: float) -> float:
    """On a discrete chain a time is moved to the nearest step i / T (i >= 1); elsewhere unchanged."""
    if not getattr(process, "is_discrete", False) or t == 0.0:
        return t
    return max(1, round(t * process.T)) / process.T


def base_grid(process: NoiseProcess, schedule, steps: int, schedule_options: dict | None,
              sampler: str | None = None) -> Tensor:
    """The descending grid of `steps` steps that difflab.sample would walk for `sampler` ('default' resolved as
    there)."""
    if isinstance(schedule, FittedGrid):
        return schedule.times.to(f64)
    if isinstance(schedule, str) and schedule == DEFAULT_SCHEDULE:
        schedule = default_schedule(process, sampler, steps)
    if isinstance(schedule, str) and schedule == "optimized":
        raise DifflabError("editing takes a fixed grid: fit one with `difflab fit-schedule` and pass it, "
                           "or use a named schedule (uniform, logsnr, karras, ...)")
    return make_grid(process, schedule, steps, **(schedule_options or {}))


def cut_grid(ts: Tensor, t_start: float) -> Tensor:
    """The grid from t_start down: [t_start, every ts[i] < t_start] (SDEdit's truncated schedule, as
    diffusers' img2img keeps the last strength * steps steps of the full schedule)."""
    below = ts[ts < t_start - 1e-12]
    return torch.cat([torch.tensor([t_start], dtype=f64), below.to(f64)])


def generator_for(seed, generator, device) -> torch.Generator | None:
    """One generator for all the randomness of an edit (noise of x_s, replacements, jumps, the sampler)."""
    if seed is not None and generator is not None:
        raise DifflabError("pass either seed or generator, not both")
    if generator is not None:
        return generator
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise DifflabError(f"seed must be an int or None; got {seed!r}")
    return make_generator(seed, device)


def randn_like(x: Tensor, generator) -> Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def as_list(v) -> Sequence:
    return v if isinstance(v, (list, tuple)) else [v]
