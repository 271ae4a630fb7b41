"""Deterministic inversion: the image's noise x_T by running the probability-flow ODE from t = 0 up to
t = 1 (DDIM inversion: Song et al. 2021, 'DDIM', sec. 4.3 / eq. 14; Dhariwal & Nichol 2021, App. F), and
reconstruction by sampling back down the same grid.

In EDM's scaled variables x~ = x / alpha, sigma~ = sigma / alpha the ODE is dx~/dsigma~ = eps_hat, so a
step from t up to t' (r = alpha'/alpha) is the sampler's step walked backwards:

    euler / ddim (order 1):  x' = r x + (sigma' - r sigma) eps_1,
    heun (order 2):          x' = r x + (sigma' - r sigma) (eps_1 + eps_2) / 2,
                             eps_2 = eps_hat at the Euler point (x'_euler, t'),

eps_1 = eps_hat(x, t). The first step leaves the data end (sigma = 0, where eps_hat is 0/0) with eps_hat
evaluated at (x, t'), an O(h) error in the slope of one step (O(h^2) in x), and, as in difflab.sampling.heun
walked forwards, it takes no correction, nor does a step into alpha = 0 (t = 1 of rectified flow). The
reconstruction error of invert-then-sample therefore falls as steps^-order (tests/editing).
"""

from __future__ import annotations

import torch
from torch import Tensor

from difflab.editing.common import EditResult, base_grid, check_image
from difflab.sampling import DEFAULT_SCHEDULE, DETERMINISTIC, STOCHASTIC, sample
from difflab.sampling.core import Evaluator, floats, lincomb
from difflab.sampling.counting import CountingDenoiser
from difflab.utils.errors import DifflabError

INVERSION_ORDERS = {"ddim": 1, "euler": 1, "heun": 2}


def check_inversion_sampler(sampler: str, options: dict) -> int:
    """The solver's order, or one message for a stochastic or unsupported choice."""
    stochastic = sampler in STOCHASTIC or float(options.get("eta", 0.0)) > 0 or float(options.get("s_churn", 0.0)) > 0
    if stochastic:
        raise DifflabError(f"inversion needs a deterministic sampler; {sampler!r} with {options or 'its defaults'} "
                           "draws fresh noise at every step: use --sampler ddim, euler or heun (eta=0, s_churn=0)")
    if sampler not in INVERSION_ORDERS:
        known = "deterministic" if sampler in DETERMINISTIC else "unknown"
        raise DifflabError(f"inversion is written for ddim, euler and heun; {sampler!r} is {known}: use one of those")
    extra = sorted(set(options) - {"eta", "s_churn"})
    if extra:
        raise DifflabError(f"inversion takes no sampler options besides eta=0 / s_churn=0; got {extra}")
    return INVERSION_ORDERS[sampler]


@torch.no_grad()
def invert(denoiser, x0: Tensor, *, sampler: str = "ddim", steps: int = 50, schedule=DEFAULT_SCHEDULE,
           schedule_options: dict | None = None, cond=None, guidance=None, **options) -> EditResult:
    """The noise x_T whose deterministic sample on the same grid is x0 (module doc); EditResult.x is x_T."""
    x0 = check_image(x0, "the image")
    order = check_inversion_sampler(sampler, options)
    model = guidance(denoiser) if guidance is not None else denoiser
    counted = CountingDenoiser(model)
    process = denoiser.process
    ts = base_grid(process, schedule, steps, schedule_options, sampler)
    up = torch.flip(ts, [0])  # ascending: data end first
    alpha, sigma = floats(process.alpha(up)), floats(process.sigma(up))
    ev = Evaluator(counted, up, x0, cond)
    x = x0
    for j in range(up.numel() - 1):
        r = alpha[j + 1] / alpha[j]
        k = sigma[j + 1] - r * sigma[j]
        from_data = sigma[j] == 0.0
        eps_1 = ev(x, j + 1 if from_data else j).eps
        x_next = lincomb(x, r, [(k, eps_1)])
        if order == 2 and not from_data and alpha[j + 1] > 0.0:
            eps_2 = ev(x_next, j + 1).eps
            x_next = lincomb(x, r, [(0.5 * k, eps_1), (0.5 * k, eps_2)])
        x = x_next
    return EditResult(x, counted.nfe, ts)


@torch.no_grad()
def reconstruct(denoiser, x_T: Tensor, times: Tensor, *, sampler: str = "ddim", cond=None, guidance=None,
                **options) -> EditResult:
    """Sample x_T back down `times` (the grid of `invert`) with the same deterministic sampler."""
    check_inversion_sampler(sampler, options)
    result = sample(denoiser, x_T, sampler=sampler, schedule=times, cond=cond, guidance=guidance, **options)
    return EditResult(result.x, result.nfe, times)
