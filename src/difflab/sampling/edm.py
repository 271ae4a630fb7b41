"""Euler and Heun on the probability-flow ODE (Karras et al. 2022, 'Elucidating the Design Space...', EDM).

Every process has the same probability-flow ODE once written in EDM's scaled variables
x~ = x / alpha and sigma~ = sigma / alpha (seed 003's generalized diffusion, EDM eq. 4 with s(t) = alpha):

    dx~ / dsigma~ = eps_hat(x, t),     eps_hat = E[eps | x_t]      (seed 001's PF-ODE, dx/dt = alpha' x0 + sigma' eps,
                                                                 divided through by alpha).

The solvers step in these variables (EDM's choice sigma(t) = t, s(t) = 1, which keeps trajectories nearly
straight) and map back: an Euler step from (x, t) to t' is x' = r x + (sigma' - r sigma) eps_hat with
r = alpha'/alpha, which is algebraically DDIM (eta = 0); for rectified flow, where alpha and sigma are linear
in t, it is also the Euler step in t of seed 003's sampler x <- x - dt v. A step that starts at alpha = 0
(flow at t = 1) uses its limit x' = alpha' x0_hat + sigma' eps_hat.

Heun (EDM Algorithm 1) averages eps_hat at both ends; like EDM it skips the correction on a step into
sigma = 0, and on a step from alpha = 0 (an infinite sigma~ interval). EDM Algorithm 2's churn raises the
noise level first: gamma = min(s_churn / N, sqrt(2) - 1) for sigma~ in [s_tmin, s_tmax], sigma~_hat =
(1 + gamma) sigma~, and x_hat = alpha_{hat|t} x + sigma_{hat|t} s_noise z (the forward transition t -> t_hat).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from difflab.sampling.core import Run, check_nonnegative, floats, lincomb


def _edm(run: Run, second_order: bool, s_churn: float, s_tmin: float, s_tmax: float, s_noise: float) -> Tensor:
    process, n = run.process, run.n
    lam = run.lam[:-1]
    sig = run.sigma[:-1] / run.alpha[:-1]  # sigma~_i (inf where alpha = 0)
    churn = (sig >= s_tmin) & (sig <= s_tmax) & torch.isfinite(lam)
    gamma = torch.where(churn, torch.full_like(lam, min(s_churn / n, math.sqrt(2) - 1)), torch.zeros_like(lam))
    t_hat = torch.where(gamma > 0, process.t_from_log_snr(lam - torch.log1p(gamma)).to(lam.dtype), run.ts[:-1])
    t_hat = torch.minimum(torch.maximum(t_hat, run.ts[:-1]), torch.ones_like(t_hat))
    c_keep, c_noise = process.transition(run.ts[:-1], t_hat)
    c_keep = torch.where(t_hat > run.ts[:-1], c_keep, torch.ones_like(c_keep))
    c_noise = torch.where(t_hat > run.ts[:-1], c_noise * s_noise, torch.zeros_like(c_noise))
    a_hat, s_hat = process.alpha(t_hat), process.sigma(t_hat)
    a_next, s_next = run.alpha[1:], run.sigma[1:]
    from_zero = a_hat == 0
    ratio = torch.where(from_zero, torch.zeros_like(a_hat), a_next / a_hat)  # r = alpha'/alpha_hat
    k_eps = torch.where(from_zero, s_next, s_next - ratio * s_hat)  # Euler: r x + k eps (or alpha' x0 + sigma' eps)
    correct = (s_next > 0) & ~from_zero if second_order else torch.zeros_like(from_zero)

    at_hat = run.evaluator(t_hat)
    ratio_f, k_f, a_next_f = floats(ratio), floats(k_eps), floats(a_next)
    keep_f, noise_f, t_hat_f, correct_f = floats(c_keep), floats(c_noise), t_hat.tolist(), correct.tolist()
    from_zero_f = from_zero.tolist()
    x = run.like
    for i in range(n):
        x_hat = x
        if noise_f[i] != 0.0:
            x_hat = lincomb(x, keep_f[i], [(noise_f[i], run.noise(t_hat_f[i], run.t[i]))])
        pred = at_hat(x_hat, i)
        if from_zero_f[i]:
            x_next = lincomb(pred.x0, a_next_f[i], [(k_f[i], pred.eps)])
        else:
            x_next = lincomb(x_hat, ratio_f[i], [(k_f[i], pred.eps)])
        if correct_f[i]:
            eps_2 = run.at(x_next, i + 1).eps
            x_next = lincomb(x_hat, ratio_f[i], [(0.5 * k_f[i], pred.eps), (0.5 * k_f[i], eps_2)])
        x = run.done(i, x_next, pred.x0)
    return x


def _churn_options(s_churn: float, s_tmin: float, s_tmax: float, s_noise: float) -> tuple[float, ...]:
    return tuple(check_nonnegative(k, v) for k, v in
                 (("s_churn", s_churn), ("s_tmin", s_tmin), ("s_tmax", s_tmax), ("s_noise", s_noise)))


def euler(
    denoiser,
    x: Tensor,
    ts,
    *,
    cond=None,
    generator=None,
    callback=None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
) -> Tensor:
    """Euler on the probability-flow ODE in (x/alpha, sigma/alpha), optionally with EDM churn. 1 NFE per step."""
    run = Run(denoiser, x, ts, cond=cond, generator=generator, callback=callback)
    return _edm(run, False, *_churn_options(s_churn, s_tmin, s_tmax, s_noise))


def heun(
    denoiser,
    x: Tensor,
    ts,
    *,
    cond=None,
    generator=None,
    callback=None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
) -> Tensor:
    """Heun's second-order method (EDM Algorithm 1; Algorithm 2 with s_churn > 0). 2 NFE per step, 1 on a
    step into sigma = 0 or from alpha = 0."""
    run = Run(denoiser, x, ts, cond=cond, generator=generator, callback=callback)
    return _edm(run, True, *_churn_options(s_churn, s_tmin, s_tmax, s_noise))
