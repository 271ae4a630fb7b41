"""The reverse-time SDE (Song et al. 2021, 'Score-Based Generative Modeling through SDEs'; seed 001):

    dx = [f(t) x - g(t)^2 grad log p_t(x)] dt + g(t) dw_bar,    grad log p_t = -eps_hat / sigma   (Tweedie),

with the forward drift f = alpha'/alpha and diffusion g^2 = (sigma^2)' - 2 f sigma^2 of the process.
Euler-Maruyama steps it backward; the predictor-corrector sampler (Song et al. Algorithm 2/3) interleaves
Langevin MCMC moves at each noise level.
"""

from __future__ import annotations

import torch
from torch import Tensor

from difflab.sampling.core import Run, check_nonnegative, floats, lincomb
from difflab.sampling.linear import LinearPlan, run_linear
from difflab.utils.errors import DifflabError


def _euler_maruyama_plan(run: Run) -> LinearPlan:
    """x_{i+1} = x - dt [f x + g^2 eps_hat / sigma] + g sqrt(dt) z, dt = t_i - t_{i+1}, written in (x, x0_hat):
    eps_hat = (x - alpha x0_hat) / sigma gives a = 1 - dt f - dt g^2 / sigma^2, w = dt g^2 alpha / sigma^2.
    The last step adds no noise (Song et al.'s final 'noise removal': the output is the step's mean)."""
    t = run.ts[:-1]
    f, g2 = run.process.drift_coef(t).to(torch.float64), run.process.diffusion_sq(t).to(torch.float64)
    if not (bool(torch.isfinite(f).all()) and bool(torch.isfinite(g2).all())):
        k = int(torch.nonzero(~(torch.isfinite(f) & torch.isfinite(g2)))[0])
        raise DifflabError(
            f"the reverse SDE has an infinite drift at t = {float(t[k])} (alpha = 0 there, e.g. rectified flow "
            "at t = 1); start the grid below it (e.g. t_max=0.999) or use an ODE or DPM-Solver++ SDE sampler"
        )
    dt = run.ts[:-1] - run.ts[1:]
    s2 = run.sigma[:-1] ** 2
    a = 1 - dt * f - dt * g2 / s2
    w = dt * g2 * run.alpha[:-1] / s2
    c = (g2.clamp(min=0) * dt).sqrt()
    c[-1] = 0.0
    return LinearPlan(floats(a), [[v] for v in floats(w)], floats(c))


def euler_maruyama(denoiser, x: Tensor, ts, *, cond=None, generator=None, callback=None) -> Tensor:
    """Reverse-SDE Euler-Maruyama (Song et al. 2021; seed 001's SDE sampler). 1 NFE per step; first order
    in the weak sense, conditionally stable (needs dt g^2 / sigma^2 < 2)."""
    run = Run(denoiser, x, ts, cond=cond, generator=generator, callback=callback)
    return run_linear(run, _euler_maruyama_plan(run))


def predictor_corrector(
    denoiser,
    x: Tensor,
    ts,
    *,
    cond=None,
    generator=None,
    callback=None,
    snr: float = 0.16,
    corrector_steps: int = 1,
) -> Tensor:
    """Predictor-corrector sampling (Song et al. 2021, Algorithms 2-3): at each grid time, `corrector_steps`
    Langevin moves, then an Euler-Maruyama predictor step to the next time.

    Langevin (Algorithm 4 / the reference LangevinCorrector): with s = grad log p_t(x) = -eps_hat / sigma and
    z ~ N(0, I), step = 2 a (snr ||z|| / ||s||)^2, x <- x + step s + sqrt(2 step) z, where
    a = (alpha_t / alpha_{t_next})^2 is the step's signal retention (the reference uses 1 - beta_i for VP,
    1 for VE). As in the reference the norms are averaged over the batch: per-sample norms are unstable in
    low dimension (the score vanishes at a mode, and the step explodes), so the Langevin step size, unlike
    every other sampler's noise, depends on the batch. NFE per step: corrector_steps + 1.
    """
    snr = check_nonnegative("snr", snr)
    if isinstance(corrector_steps, bool) or not isinstance(corrector_steps, int) or corrector_steps < 0:
        raise DifflabError(f"corrector_steps must be an integer >= 0; got {corrector_steps!r}")
    run = Run(denoiser, x, ts, cond=cond, generator=generator, callback=callback)
    plan = _euler_maruyama_plan(run)
    retain = floats((run.alpha[:-1] / run.alpha[1:]) ** 2)
    inv_sigma = floats(1 / run.sigma[:-1])
    x = run.like
    for i in range(run.n):
        for _ in range(corrector_steps):
            score = run.at(x, i).eps * -inv_sigma[i]
            z = run.noise.extra()
            ratio = z.flatten(1).norm(dim=1).mean() / score.flatten(1).norm(dim=1).mean().clamp(min=1e-30)
            step = (2 * retain[i] * snr**2) * ratio.square()
            x = x + step * score + (2 * step).sqrt() * z
        x0 = run.at(x, i).x0
        x_next = lincomb(x, plan.a[i], [(plan.w[i][0], x0)])
        if plan.c[i] != 0.0:
            x_next.add_(run.noise(run.t[i], run.t[i + 1]), alpha=plan.c[i])
        x = run.done(i, x_next, x0)
    return x

