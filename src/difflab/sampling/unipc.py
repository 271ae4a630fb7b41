"""UniPC (Zhao et al. 2023, 'UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of Diffusion
Models'), data prediction, B(h) = expm1(h) ('bh2'), with the UniC corrector.

From t_i to t_{i+1}, h = lambda_{i+1} - lambda_i, with past estimates m_{i-k} at r_k = (lambda_{i-k} - lambda_i)/h:

    UniP-p:  x_{i+1} = sigma_{i+1}/sigma_i x_i - alpha_{i+1} phi_1 m_i
                       - alpha_{i+1} B(h) sum_{k<p} rho^p_k (m_{i-k} - m_i) / r_k,
    UniC-p:  the same with one more term rho^c_p (m_{i+1} - m_i), m_{i+1} evaluated at the predicted x_{i+1}
             (Zhao et al. Algorithm 2: the evaluation is reused by the next step, so the corrector costs no NFE),

with phi_1 = expm1(-h), B(h) = expm1(-h) and rho solving R rho = b (eq. 8 / Theorem 3.1):
R_qk = r_k^{q-1}, b_q = q! phi_{q+1}(h) / B(h), phi_{q+1} the recursion phi_{k+1} = phi_k / (-h) - 1/k!.
rho^p = [1/2] for p = 2 and rho^c = [1/2] for p = 1 (the paper's choices, as in diffusers). With the
corrector, UniPC-p has order p + 1. Every coefficient depends on the grid alone and is computed before the
loop, one `UniPCStep` per step; the callback of step i reports x_{i+1} once it is corrected (after the
evaluation at x_{i+1}, which the correction needs), so trajectories hold the states the sampler continues from.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from torch import Tensor

from difflab.sampling.core import Run, floats, lincomb
from difflab.sampling.linear import multistep_orders
from difflab.utils.errors import DifflabError


class UniPCStep(NamedTuple):
    """Step i, as Python floats. UniC (when corrector_w is not None) first rewrites the predicted x_i as
    corrector_a x_{i-1} + sum_k corrector_w[k] m_{i+1-k} (m_i newest); UniP then predicts
    x_{i+1} = a x_i + sum_k w[k] m_{i-k}."""

    a: float
    w: list[float]
    corrector_a: float | None
    corrector_w: list[float] | None


def _rhs(h: float, p: int) -> tuple[np.ndarray, float, float]:
    """(b, phi_1, B(h)) of UniPC-bh2 for order p (diffusers' multistep_uni_p_bh_update, x0 prediction)."""
    hh = -h
    phi_1 = math.expm1(hh)
    b_h = math.expm1(hh)
    phi_k = phi_1 / hh - 1
    factorial = 1.0
    b = []
    for q in range(1, p + 1):
        b.append(phi_k * factorial / b_h)
        factorial *= q + 1
        phi_k = phi_k / hh - 1 / factorial
    return np.array(b), phi_1, b_h


def unipc_weights(lam: list[float], i: int, p: int, alpha_next: float, corrector: bool) -> list[float]:
    """Weights on m_{i+1} (corrector only), m_i, m_{i-1}, ..., m_{i-p+1} of UniP-p / UniC-p for the step from
    t_i to t_{i+1}. With h = inf (a start at alpha = 0) UniC-1 is the trapezoid rule in e^lambda, still
    second order there: x_{i+1} = sigma_{i+1}/sigma_i x_i + alpha_{i+1} (m_i + m_{i+1}) / 2."""
    h = lam[i + 1] - lam[i]
    rks = np.array([(lam[i - k] - lam[i]) / h for k in range(1, p)] + [1.0])
    b, phi_1, b_h = _rhs(h, p)
    R = np.vander(rks, p, increasing=True).T  # R[q, k] = r_k^q
    if corrector:
        rho = np.array([0.5]) if p == 1 else np.linalg.solve(R, b)
    elif p == 1:
        rho = np.zeros(0)
    else:
        rho = np.array([0.5]) if p == 2 else np.linalg.solve(R[:-1, :-1], b[:-1])
    scale = -alpha_next * b_h
    hist = [scale * rho[k - 1] / rks[k - 1] for k in range(1, p)]  # on m_{i-k}
    w_i = -alpha_next * phi_1 - sum(hist)  # on m_i
    if corrector:
        return [scale * rho[-1], w_i - scale * rho[-1], *hist]
    return [w_i, *hist]


def unipc(
    denoiser,
    x: Tensor,
    ts,
    *,
    cond=None,
    generator=None,
    callback=None,
    order: int = 2,
    corrector: bool = True,
    lower_order_final: bool = True,
) -> Tensor:
    """UniPC-p (bh2, data prediction) with the UniC corrector: order + 1 accurate, 1 NFE per step.

    order in {1, 2, 3} is the predictor order (UniP-p); warm-up starts at 1 and `lower_order_final` caps
    step i at n - i as in the reference implementation. The final step (into the last grid time) is not
    corrected: that would need an evaluation there.
    """
    if order not in (1, 2, 3):
        raise DifflabError(f"unipc order must be 1, 2 or 3; got {order!r}")
    run = Run(denoiser, x, ts, cond=cond, generator=generator, callback=callback)
    plan = _unipc_plan(run, order, corrector, lower_order_final)
    depth = max(len(w) for step in plan for w in (step.w, step.corrector_w or []))
    x_prev, m_prev, history = None, None, []
    x = run.like
    for i, step in enumerate(plan):
        m = run.at(x, i).x0  # m_i at the predicted x_i
        history = [m, *history][:depth]  # newest first
        # UniC: correct x_i with m_i, which the predictor of step i needs anyway (no extra NFE)
        if step.corrector_w is not None:
            cw = step.corrector_w
            x = lincomb(x_prev, step.corrector_a, zip(cw, history[: len(cw)], strict=True))
        if i > 0:  # step i-1 is final now: report its corrected state
            run.done(i - 1, x, m_prev)
        # UniP: predict x_{i+1}
        x_prev, m_prev = x, m
        x = lincomb(x, step.a, zip(step.w, history[: len(step.w)], strict=True))
    return run.done(run.n - 1, x, m_prev)


def _unipc_plan(run: Run, order: int, corrector: bool, lower_order_final: bool) -> list[UniPCStep]:
    """UniP weights of every step and UniC weights for x_1..x_{n-1} (x_i is corrected with the order of
    step i-1), from the float64 grid."""
    lam, alpha, sigma = floats(run.lam), floats(run.alpha), floats(run.sigma)
    h = [lam[i + 1] - lam[i] for i in range(run.n)]
    orders = multistep_orders(h, order)
    if lower_order_final:
        orders = [min(p, run.n - i) for i, p in enumerate(orders)]
    plan = []
    for i in range(run.n):
        w = unipc_weights(lam, i, orders[i], alpha[i + 1], False) if math.isfinite(h[i]) else [alpha[i + 1]]
        ca, cw = None, None
        if corrector and i > 0:
            ca, cw = sigma[i] / sigma[i - 1], unipc_weights(lam, i - 1, orders[i - 1], alpha[i], True)
        plan.append(UniPCStep(sigma[i + 1] / sigma[i], w, ca, cw))
    return plan
