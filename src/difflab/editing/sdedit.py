"""SDEdit / img2img (Meng et al. 2022, 'SDEdit: Guided Image Synthesis and Editing with Stochastic
Differential Equations', Algorithm 1; seed 002's noising-then-denoising).

    x_s = alpha(s) x_in + sigma(s) eps,   s = strength,   then solve from t = s to 0 with any sampler.

The grid is the sampler's own grid of `steps` steps cut at s (`cut_grid`), so about strength * steps steps
are taken. With the exact denoiser and a stochastic sampler the output is a draw from p(x0 | x_s) (the
reverse SDE started at x_s), which is the prior p(x0) at s = 1 where alpha(1) = 0, and x_in at s = 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from difflab.editing.common import (
    EditResult,
    base_grid,
    check_image,
    check_strength,
    cut_grid,
    generator_for,
    randn_like,
    snap_time,
)
from difflab.sampling import DEFAULT, DEFAULT_SCHEDULE, DEFAULT_STEPS, resolve_sampler, sample
from difflab.utils.tensors import f64


def sdedit(denoiser, x_in: Tensor, strength: float, *, sampler: str = DEFAULT, steps: int = DEFAULT_STEPS,
           schedule=DEFAULT_SCHEDULE, schedule_options: dict | None = None, seed: int | None = None,
           generator: torch.Generator | None = None, cond=None, guidance=None, **options) -> EditResult:
    """Noise x_in to t = strength and denoise it with `sampler` (any of difflab.sampling.SAMPLERS, with its
    options) on the cut grid; guidance as in difflab.sample."""
    x_in = check_image(x_in)
    s = snap_time(denoiser.process, check_strength(strength))
    sampler = resolve_sampler(sampler, denoiser.process, steps)  # once: the cut grid has fewer steps
    ts = base_grid(denoiser.process, schedule, steps, schedule_options, sampler)
    if s == 0.0:
        return EditResult(x_in.clone(), 0, torch.tensor([0.0], dtype=f64))
    g = generator_for(seed, generator, x_in.device)
    t = torch.full((x_in.shape[0],), s, dtype=f64, device=x_in.device)
    x_s = denoiser.process.sample_xt(x_in, t, randn_like(x_in, g)).to(x_in.dtype)
    grid = cut_grid(ts, s)
    result = sample(denoiser, x_s, sampler=sampler, schedule=grid, generator=g, cond=cond, guidance=guidance,
                    **options)
    return EditResult(result.x, result.nfe, grid)
