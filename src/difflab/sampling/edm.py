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
from typing import NamedTuple

import torch
from torch import Tensor

from difflab.sampling.core import Run, check_nonnegative, floats, lincomb
from difflab.utils.tensors import f64


class EDMStep(NamedTuple):
    """Step i of EDM Algorithm 2 from t_i to t_{i+1}, as Python floats (x-space coefficients).

    Churn: x_hat = keep x + noise z at t_hat >= t_i (noise = 0: no churn, x_hat = x, t_hat = t_i).
    Euler: x_next = ratio x_hat + k_eps eps_hat, or alpha_next x0_hat + k_eps eps_hat when alpha(t_hat) = 0.
    correct: take Heun's second-order correction with eps_hat at (x_next, t_{i+1}).
    """

    t_hat: float
    keep: float
    noise: float
    ratio: float
    k_eps: float
    alpha_next: float
    from_zero: bool
    correct: bool


def _edm_plan(run: Run, second_order: bool, s_churn: float, s_tmin: float, s_tmax: float,
              s_noise: float) -> list[EDMStep]:
    """EDM's per-step coefficients from the float64 grid (module docstring for the formulas); the process is
    evaluated once for all steps, the loop only assembles the plan."""
    process, n, t = run.process, run.n, run.t
    lam, alpha, sigma = floats(run.lam), floats(run.alpha), floats(run.sigma)
    sig = floats(run.sigma / run.alpha)  # sigma~_i (inf where alpha = 0)
    gamma = min(s_churn / n, math.sqrt(2) - 1)  # EDM Algorithm 2, line 4
    churned = [gamma > 0 and s_tmin <= sig[i] <= s_tmax and math.isfinite(lam[i]) for i in range(n)]
    # sigma~_hat = (1 + gamma) sigma~_i, i.e. lambda_hat = lambda_i - log(1 + gamma)
    t_up = floats(process.t_from_log_snr(run.lam[:-1] - math.log1p(gamma))) if any(churned) else t
    t_hat = torch.tensor([min(max(t_up[i], t[i]), 1.0) if churned[i] else t[i] for i in range(n)], dtype=f64)
    keep, noise = (floats(v) for v in process.transition(run.ts[:-1], t_hat))  # forward transition t_i -> t_hat
    a_hat, s_hat = floats(process.alpha(t_hat)), floats(process.sigma(t_hat))
    plan = []
    for i, th in enumerate(t_hat.tolist()):
        churn, from_zero = th > t[i], a_hat[i] == 0.0
        ratio = 0.0 if from_zero else alpha[i + 1] / a_hat[i]  # r = alpha_{i+1} / alpha_hat
        k_eps = sigma[i + 1] if from_zero else sigma[i + 1] - ratio * s_hat[i]
        correct = second_order and sigma[i + 1] > 0 and not from_zero
        plan.append(EDMStep(th, keep[i] if churn else 1.0, noise[i] * s_noise if churn else 0.0, ratio, k_eps,
                            alpha[i + 1], from_zero, correct))
    return plan


def _edm(run: Run, second_order: bool, s_churn: float, s_tmin: float, s_tmax: float, s_noise: float) -> Tensor:
    plan = _edm_plan(run, second_order, s_churn, s_tmin, s_tmax, s_noise)
    at_hat = run.evaluator(torch.tensor([step.t_hat for step in plan], dtype=f64))
    x = run.like
    for i, step in enumerate(plan):
        # increase noise temporarily: x_hat = x_i + sqrt(t_hat^2 - t_i^2) S_noise z (Algorithm 2, lines 5-6)
        x_hat = x
        if step.noise != 0.0:
            x_hat = lincomb(x, step.keep, [(step.noise, run.noise(step.t_hat, run.t[i]))])
        # Euler step from t_hat to t_{i+1} (lines 7-8)
        pred = at_hat(x_hat, i)
        if step.from_zero:
            x_next = lincomb(pred.x0, step.alpha_next, [(step.k_eps, pred.eps)])
        else:
            x_next = lincomb(x_hat, step.ratio, [(step.k_eps, pred.eps)])
        # second-order correction: average eps_hat at both ends (lines 9-11)
        if step.correct:
            eps_next = run.at(x_next, i + 1).eps
            x_next = lincomb(x_hat, step.ratio, [(0.5 * step.k_eps, pred.eps), (0.5 * step.k_eps, eps_next)])
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
