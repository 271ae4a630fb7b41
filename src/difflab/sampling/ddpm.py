"""DDPM ancestral sampling and DDIM, on any grid and any process (seeds 001, 002, 004).

Both step from t to s < t (consecutive grid times) through the posterior q(x_s | x_t, x0) with x0 replaced
by the denoiser's estimate x0_hat (seed 004; Kingma et al. 2021, VDM eq. 30-32):

    mean = c_xt x_t + c_x0 x0_hat,   c_xt = alpha_{t|s} sigma_s^2 / sigma_t^2,   c_x0 = alpha_s sigma_{t|s}^2 / sigma_t^2,
    var_post = sigma_{t|s}^2 sigma_s^2 / sigma_t^2,   alpha_{t|s} = alpha_t / alpha_s,
    sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2.

For the discrete VP chain with s = t - 1/T this is Algorithm 2 of Ho et al. 2020 (seeds 001, 002):
x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) eps_hat) / sqrt(1 - beta_t) + sigma_t z, because alpha_{t|s}^2 = 1 - beta_t
and sigma_{t|s}^2 = beta_t. On a sparser grid it is the respaced sampler of Nichol & Dhariwal 2021 (sec. 4),
whose betas 1 - abar_t / abar_s are exactly these transition variances.
"""

from __future__ import annotations

import torch
from torch import Tensor

from difflab.sampling.core import Run, check_unit_interval, floats
from difflab.sampling.linear import LinearPlan, run_linear
from difflab.utils.errors import check_choice

DDPM_VARIANCES = ("posterior", "beta")


def _posterior(run: Run) -> tuple[Tensor, Tensor, Tensor]:
    """(c_xt, c_x0, var_post) for every step (s, t) = (ts[i+1], ts[i]), float64."""
    return run.process.posterior_coefficients(run.ts[1:], run.ts[:-1])


def ddpm(
    denoiser, x: Tensor, ts, *, cond=None, generator=None, callback=None, variance: str = "posterior"
) -> Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2; seeds 001/002), on the full chain or respaced.

    x_s = c_xt x_t + c_x0 x0_hat + sigma z. variance='posterior': sigma^2 = var_post (Ho et al.'s
    sigma_t^2 = beta~_t, the lower bound); variance='beta': sigma^2 = sigma_{t|s}^2 (sigma_t^2 = beta_t, the
    upper bound). The step into the data end (sigma_s = 0) adds no noise ("z = 0 if t = 1"). 1 NFE per step.
    """
    check_choice("DDPM variance", variance, DDPM_VARIANCES)
    run = Run(denoiser, x, ts, cond=cond, generator=generator, callback=callback)
    c_xt, c_x0, var_post = _posterior(run)
    if variance == "posterior":
        var = var_post
    else:
        var = run.process.transition(run.ts[1:], run.ts[:-1])[1] ** 2
    var = torch.where(run.sigma[1:] == 0, torch.zeros_like(var), var)
    plan = LinearPlan(floats(c_xt), [[w] for w in floats(c_x0)], floats(var.clamp(min=0).sqrt()))
    return run_linear(run, plan)


def ddim(denoiser, x: Tensor, ts, *, cond=None, generator=None, callback=None, eta: float = 0.0) -> Tensor:
    """DDIM (Song, Meng & Ermon 2021, eq. 12 and 16; seed 001):

    x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z,   c^2 = eta^2 var_post,
    eps_hat = (x_t - alpha_t x0_hat) / sigma_t.

    eta = 0 is deterministic: the Euler step of the probability-flow ODE in x / alpha and sigma / alpha
    (see `euler`); eta = 1 is DDPM with the posterior variance. 1 NFE per step.
    """
    eta = check_unit_interval("eta", eta)
    run = Run(denoiser, x, ts, cond=cond, generator=generator, callback=callback)
    a_t, s_t, a_s, s_s = run.alpha[:-1], run.sigma[:-1], run.alpha[1:], run.sigma[1:]
    var = eta**2 * _posterior(run)[2]
    coef_x = (s_s**2 - var).clamp(min=0).sqrt() / s_t
    plan = LinearPlan(floats(coef_x), [[w] for w in floats(a_s - coef_x * a_t)], floats(var.sqrt()))
    return run_linear(run, plan)
