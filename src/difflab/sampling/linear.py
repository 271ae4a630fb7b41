"""The loop shared by every sampler whose step is linear in the state and the x0 estimates.

DDPM, DDIM, DPM-Solver++ (2M, 3M, 2M-SDE), UniPC and reverse-SDE Euler-Maruyama all take steps of the form

    x_{i+1} = a_i x_i + sum_j w_ij x0_{i-j} + sum_j e_ij eps_{i-j} + c_i z_i,          z_i ~ N(0, I),

with x0_k, eps_k the denoiser's data and noise estimates at (x_k, t_k), newest first (the linear-multistep
family, PLMS / iPNDM / DEIS, extrapolates eps; the exponential integrators extrapolate x0); UniPC adds a corrector that rewrites
x_i once x0_i (evaluated at the predicted x_i) is known: x_i <- ca_i x_{i-1} + sum_j cw_ij x0_{i-j}.
Each sampler is therefore only a function from the grid's (alpha, sigma, lambda) to the coefficient table
(a, w, c), computed in float64 before the loop; this module walks the grid (DESIGN example 1: one loop,
many updates). The history of predictions lives in a local list.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from torch import Tensor

from difflab.sampling.core import Run, lincomb


class LinearPlan(NamedTuple):
    """Per-step coefficients as Python floats (one list entry per step); e: weights on the eps history."""

    a: list[float]
    w: list[list[float]]
    c: list[float] | None = None
    corrector_a: list[float] | None = None
    corrector_w: list[list[float] | None] | None = None
    e: list[list[float]] | None = None


def run_linear(run: Run, plan: LinearPlan) -> Tensor:
    """Walk run's grid with `plan`; returns x at the last grid time."""
    depth = max(len(w) for w in plan.w)
    if plan.corrector_w is not None:
        depth = max([depth] + [len(w) for w in plan.corrector_w if w])
    if plan.e is not None:
        return _run_linear_eps(run, plan, max([depth] + [len(e) for e in plan.e]))
    x, x_prev, history = run.like, None, []
    for i in range(run.n):
        x0 = run.at(x, i).x0
        history = [x0, *history][:depth]
        if plan.corrector_w is not None and plan.corrector_w[i]:
            cw = plan.corrector_w[i]
            x = lincomb(x_prev, plan.corrector_a[i], zip(cw, history[: len(cw)], strict=True))
        x_prev = x
        x_next = lincomb(x, plan.a[i], zip(plan.w[i], history[: len(plan.w[i])], strict=True))
        if plan.c is not None and plan.c[i] != 0.0:
            x_next.add_(run.noise(run.t[i], run.t[i + 1]), alpha=plan.c[i])
        x = run.done(i, x_next, x0)
    return x


def _run_linear_eps(run: Run, plan: LinearPlan, depth: int) -> Tensor:
    """run_linear for plans with eps weights (no corrector): both histories kept, newest first."""
    x, x0s, epss = run.like, [], []
    for i in range(run.n):
        pred = run.at(x, i)
        x0s, epss = [pred.x0, *x0s][:depth], [pred.eps, *epss][:depth]
        w, e = plan.w[i], plan.e[i]
        terms = [*zip(w, x0s[: len(w)], strict=True), *zip(e, epss[: len(e)], strict=True)]
        x_next = lincomb(x, plan.a[i], terms)
        if plan.c is not None and plan.c[i] != 0.0:
            x_next.add_(run.noise(run.t[i], run.t[i + 1]), alpha=plan.c[i])
        x = run.done(i, x_next, pred.x0)
    return x


def multistep_orders(h: list[float], order: int) -> list[int]:
    """Order usable at each step of a multistep method: warm up from 1 (no history yet), never reach back
    across an infinite log-SNR gap (alpha = 0 at the start), and fall to 1 on a step into sigma = 0
    (infinite h, the final jump to x0; k-diffusion and diffusers do the same)."""
    orders = []
    for i, hi in enumerate(h):
        if not math.isfinite(hi):
            orders.append(1)
            continue
        p = 1
        while p < order and i - p >= 0 and math.isfinite(h[i - p]):
            p += 1
        orders.append(p)
    return orders
