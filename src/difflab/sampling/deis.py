"""The linear-multistep family on the noise estimate: DEIS, iPNDM (Zhang & Chen 2023, 'Fast Sampling of
Diffusion Models with Exponential Integrator', ICLR) and PLMS / PNDM's pseudo-linear multistep (Liu et al.
2022, 'Pseudo Numerical Methods for Diffusion Models on Manifolds', ICLR).

All of them integrate the probability-flow ODE in DDIM's variables, x~ = x / alpha against rho = sigma /
alpha (seed 001's DDIM is the Euler step of dx~/drho = eps_hat; Zhang & Chen eq. 13 write the exponential
integrator of a VP model in the same form), and extrapolate eps_hat from the last p estimates:

    x_{i+1} = (alpha_{i+1} / alpha_i) x_i + alpha_{i+1} sum_j C_ij eps_{i-j},   j = 0..p-1.

* DEIS (tAB, Zhang & Chen sec. 4, eq. 14): eps(tau) is the Lagrange polynomial through (u_{i-j}, eps_{i-j})
  and C_ij = int_{rho_i}^{rho_{i+1}} l_j(u(rho)) drho, with u = t (the paper's time polynomial, basis 't'),
  u = rho (a variable-step Adams-Bashforth in rho, 'rho') or u = log rho = -lambda (diffusers'
  DEISMultistepScheduler, 'logrho'). The integral is a 24-point Gauss-Legendre rule in rho, float64, once
  per grid.
* LMS (`lms`): DEIS in 'rho' of order 4 without lower_order_final, the linear multistep method of
  k-diffusion and diffusers' LMSDiscreteScheduler (Karras et al. 2022 call it the LMS baseline).
* iPNDM (Zhang & Chen, App. B): C_ij = (rho_{i+1} - rho_i) b_j with the fixed Adams-Bashforth weights b of
  order p <= 4, warming up with the lower orders (k-diffusion's sample_ipndm). Exact only on grids uniform
  in rho; no extra NFE.
* PLMS (Liu et al. eq. 12, as diffusers' PNDMScheduler runs it with skip_prk_steps): iPNDM's weights, but
  the first step is a Heun (trapezoid) step that costs one more evaluation: N steps cost N + 1 NFE.

Warm-up: order min(order, i + 1) at step i. The first step from alpha = 0 (rectified flow at t = 1, rho =
inf) is DDIM written with x0_hat (x = alpha_{i+1} x0_hat + sigma_{i+1} eps_hat). lower_order_final: order at
most n - i on the last steps (diffusers' lower_order_final); the final jump from a discrete table's
sigma_min to the data end (rho = 0) is otherwise an ordinary step of the polynomial.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from difflab.sampling.core import Run, floats, lincomb
from difflab.sampling.linear import LinearPlan, run_linear
from difflab.utils.errors import DifflabError, check_choice

DEIS_BASES = ("t", "rho", "logrho")
#: Adams-Bashforth weights on eps_i, eps_{i-1}, ... for orders 1..4
ADAMS_BASHFORTH = ([1.0], [1.5, -0.5], [23 / 12, -16 / 12, 5 / 12], [55 / 24, -59 / 24, 37 / 24, -9 / 24])
_GL_X, _GL_W = np.polynomial.legendre.leggauss(24)


def _check_order(order: int, top: int) -> int:
    if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= top:
        raise DifflabError(f"order must be an integer from 1 to {top}; got {order!r}")
    return order


def _orders(n: int, order: int, lower_order_final: bool) -> list[int]:
    return [min(order, i + 1, n - i) if lower_order_final else min(order, i + 1) for i in range(n)]


def _rho(run: Run) -> list[float]:
    return [s / a if a > 0 else math.inf for a, s in zip(floats(run.alpha), floats(run.sigma), strict=True)]


def _plan(run: Run, weights: list[list[float]]) -> LinearPlan:
    """The plan x_{i+1} = (alpha_{i+1}/alpha_i) x_i + alpha_{i+1} sum_j C_ij eps_{i-j}; DDIM from alpha = 0."""
    alpha, sigma = floats(run.alpha), floats(run.sigma)
    a, w, e = [], [], []
    for i in range(run.n):
        if alpha[i] == 0.0:  # rho_i = inf: x_{i+1} = alpha_{i+1} x0_hat + sigma_{i+1} eps_hat
            a.append(0.0), w.append([alpha[i + 1]]), e.append([sigma[i + 1]])
        else:
            a.append(alpha[i + 1] / alpha[i]), w.append([]), e.append([alpha[i + 1] * c for c in weights[i]])
    return LinearPlan(a, w, e=e)


def deis_weights(run: Run, order: int, basis: str, lower_order_final: bool) -> list[list[float]]:
    """C_ij = int_{rho_i}^{rho_{i+1}} l_j(u(rho)) drho for every step (see the module doc), float64."""
    rho, ts, orders = _rho(run), floats(run.ts), _orders(run.n, order, lower_order_final)
    finite = [i for i in range(run.n) if math.isfinite(rho[i])]
    # quadrature nodes in rho for every step at once, mapped to t through the process's log-SNR inverse
    lo = np.array([rho[i] for i in finite]), np.array([rho[i + 1] for i in finite])
    mid, half = 0.5 * (lo[0] + lo[1]), 0.5 * (lo[1] - lo[0])
    nodes = mid[:, None] + half[:, None] * _GL_X[None, :]  # (steps, 24), all > 0
    if basis == "t":
        lam = torch.as_tensor(-np.log(nodes), dtype=torch.float64)
        u_nodes = run.process.t_from_log_snr(lam).to(torch.float64).numpy()
        u = np.array(ts)
    elif basis == "rho":
        u_nodes, u = nodes, np.array([r if math.isfinite(r) else np.nan for r in rho])
    else:
        u_nodes, u = np.log(nodes), np.array([math.log(r) if math.isfinite(r) and r > 0 else np.nan for r in rho])
    out: list[list[float]] = [[] for _ in range(run.n)]
    for k, i in enumerate(finite):
        p = orders[i]
        past = [i - j for j in range(p) if i - j >= 0 and math.isfinite(u[i - j])]  # never reach across rho = inf
        basis_values = []
        for j in past:
            lj = np.ones_like(u_nodes[k])
            for m in past:
                if m != j:
                    lj = lj * (u_nodes[k] - u[m]) / (u[j] - u[m])
            basis_values.append(float(half[k] * (_GL_W @ lj)))
        out[i] = basis_values
    return out


def deis(
    denoiser, x: Tensor, ts, *, cond=None, generator=None, callback=None, order: int = 3, basis: str = "t",
    lower_order_final: bool = True,
) -> Tensor:
    """DEIS tAB of the given order (1 = DDIM, at most 4) with the eps polynomial in `basis` (module doc).
    1 NFE per step."""
    _check_order(order, 4)
    check_choice("DEIS basis", basis, DEIS_BASES)
    run = Run(denoiser, x, ts, cond=cond, generator=generator, callback=callback)
    return run_linear(run, _plan(run, deis_weights(run, order, basis, lower_order_final)))


def lms(
    denoiser, x: Tensor, ts, *, cond=None, generator=None, callback=None, order: int = 4,
    lower_order_final: bool = False,
) -> Tensor:
    """Linear multistep in sigma (k-diffusion's sample_lms, diffusers' LMSDiscreteScheduler): DEIS with the
    eps polynomial in rho = sigma / alpha, i.e. the variable-step Adams-Bashforth method of `order` (<= 4) on
    dx~/drho = eps_hat, its weights C_ij = int l_j(rho) drho over the Lagrange basis through the last `order`
    noise levels (exact: 24-point Gauss-Legendre on a cubic). No lower orders at the end by default, as both
    peers do. 1 NFE per step."""
    return deis(denoiser, x, ts, cond=cond, generator=generator, callback=callback, order=order, basis="rho",
                lower_order_final=lower_order_final)


def _ab_weights(run: Run, order: int, lower_order_final: bool) -> list[list[float]]:
    rho, orders = _rho(run), _orders(run.n, order, lower_order_final)
    return [[(rho[i + 1] - rho[i]) * b for b in ADAMS_BASHFORTH[orders[i] - 1]] if math.isfinite(rho[i]) else []
            for i in range(run.n)]


def ipndm(
    denoiser, x: Tensor, ts, *, cond=None, generator=None, callback=None, order: int = 4,
    lower_order_final: bool = False,
) -> Tensor:
    """iPNDM (Zhang & Chen 2023, App. B; k-diffusion's sample_ipndm): fixed Adams-Bashforth weights up to
    `order` (<= 4) on eps, in DDIM's variables, lower orders while warming up. 1 NFE per step."""
    _check_order(order, 4)
    run = Run(denoiser, x, ts, cond=cond, generator=generator, callback=callback)
    return run_linear(run, _plan(run, _ab_weights(run, order, lower_order_final)))


def plms(denoiser, x: Tensor, ts, *, cond=None, generator=None, callback=None, order: int = 4) -> Tensor:
    """PLMS (Liu et al. 2022, eq. 12; diffusers' PNDMScheduler with skip_prk_steps=True): a Heun first step
    (eps' = (eps_0 + eps(x_1'))/2, the extra NFE), then Adams-Bashforth on the eps history (the estimate at
    the Heun predictor x_1' is not kept), up to `order` <= 4. N steps cost N + 1 NFE (N for N = 1)."""
    _check_order(order, 4)
    run = Run(denoiser, x, ts, cond=cond, generator=generator, callback=callback)
    plan = _plan(run, _ab_weights(run, order, False))
    if run.n == 1:
        return run_linear(run, plan)
    alpha, rho = floats(run.alpha), _rho(run)

    def step(i: int, x_i: Tensor, eps_terms: list[tuple[float, Tensor]], x0: Tensor) -> Tensor:
        if alpha[i] == 0.0:  # DDIM from rho = inf, with the x0 estimate
            return lincomb(x0, plan.w[i][0], [(plan.e[i][0], eps_terms[0][1])])
        return lincomb(x_i, plan.a[i], [(alpha[i + 1] * c, v) for c, v in eps_terms])

    first = run.at(x, 0)
    x_pred = step(0, x, [(rho[1] - rho[0], first.eps)], first.x0)
    mid = run.at(x_pred, 1)
    eps_avg, x0_avg = 0.5 * (first.eps + mid.eps), 0.5 * (first.x0 + mid.x0)  # x0_avg: only used from alpha = 0
    x = run.done(0, step(0, x, [(rho[1] - rho[0], eps_avg)], x0_avg), first.x0)
    history = [first.eps]
    for i in range(1, run.n):
        pred = run.at(x, i)
        history = [pred.eps, *history][:order]
        p = min(order, len(history))
        terms = [((rho[i + 1] - rho[i]) * b, v) for b, v in zip(ADAMS_BASHFORTH[p - 1], history, strict=False)]
        x = run.done(i, step(i, x, terms, pred.x0), pred.x0)
    return x
