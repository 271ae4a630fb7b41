"""DPM-Solver++ (Lu et al. 2022, 'DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
Models'): exponential integrators of the probability-flow ODE in log-SNR lambda, with data prediction.

The exact solution from t_i to t_{i+1}, h = lambda_{i+1} - lambda_i, is (Lu et al. eq. 8)

    x_{i+1} = sigma_{i+1} / sigma_i x_i + sigma_{i+1} int_{lambda_i}^{lambda_{i+1}} e^lambda x0_hat(lambda) dlambda,

and the solvers differ in the polynomial that approximates x0_hat(lambda) through past estimates:
1M (= DDIM), 2M (Algorithm 2), 3M (diffusers' third-order multistep update). They only use alpha, sigma,
lambda, so they run unchanged on every process. An infinite h (alpha = 0 at the start, sigma = 0 at the end)
is handled in closed form: exp(-h) -> 0, and the step falls back to first order.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from difflab.sampling.core import Run, check_nonnegative, check_unit_interval, floats, lincomb
from difflab.sampling.linear import LinearPlan, multistep_orders, run_linear
from difflab.utils.errors import DifflabError
from difflab.utils.tensors import f64


def _steps(run: Run) -> tuple[list[float], list[float], list[float], list[float]]:
    lam, alpha, sigma = floats(run.lam), floats(run.alpha), floats(run.sigma)
    return [lam[i + 1] - lam[i] for i in range(run.n)], lam, alpha, sigma


def _check_order(order: int, allowed: tuple[int, ...]) -> int:
    if order not in allowed:
        raise DifflabError(f"order must be one of {allowed}; got {order!r}")
    return order


def multistep_weights(
    h: list[float], i: int, order: int, phi1: float, alpha_next: float, published: bool = False
) -> list[float]:
    """Weights on x0_i, x0_{i-1}, x0_{i-2} of one DPM-Solver++ multistep update of the given order.

    order 1: phi1 x0_i with phi1 = -alpha_{i+1} expm1(-h).
    order 2 (Lu et al. Algorithm 2): D = (1 + 1/(2r)) x0_i - 1/(2r) x0_{i-1}, r = h_{i-1} / h_i.
    order 3: with x0(lambda_i + tau) = x0 + tau x0' + tau^2/2 x0'' the exact step adds
    alpha_{i+1} [(1 - e^-h) x0 + (h - 1 + e^-h) x0' + (h^2/2 - h + 1 - e^-h) x0''], i.e.
    phi1 x0 + phi2 D1 + phi3 D2 with phi2 = alpha (expm1(-h)/h + 1), phi3 = -alpha ((expm1(-h) + h)/h^2 - 1/2),
    D1 = h x0' and D2 = h^2 x0''. From r0 = h_{i-1}/h, r1 = h_{i-2}/h, D1_0 = (x0_i - x0_{i-1}) / r0,
    D1_1 = (x0_{i-1} - x0_{i-2}) / r1: D1 = D1_0 + r0/(r0+r1) (D1_0 - D1_1) and D2 = 2 (D1_0 - D1_1)/(r0 + r1).
    published=True uses D2 = (D1_0 - D1_1)/(r0 + r1) as Lu et al.'s code, diffusers and k-diffusion do; that
    is h^2 x0''/2, half the needed term, so the published update is second order (see dpmpp_3m).
    """
    if order == 1:
        return [phi1]
    hi = h[i]
    if order == 2:
        r = h[i - 1] / hi
        return [phi1 * (1 + 0.5 / r), -phi1 * 0.5 / r]
    r0, r1 = h[i - 1] / hi, h[i - 2] / hi
    em = math.expm1(-hi)
    phi2 = alpha_next * (em / hi + 1)
    phi3 = -alpha_next * ((em + hi) / hi**2 - 0.5) * (1.0 if published else 2.0)  # x D2 = (D1_0 - D1_1)/(r0+r1)
    k0 = phi2 * (1 + r0 / (r0 + r1)) + phi3 / (r0 + r1)
    k1 = -phi2 * r0 / (r0 + r1) - phi3 / (r0 + r1)
    return [phi1 + k0 / r0, -k0 / r0 + k1 / r1, -k1 / r1]


#: an SDE multistep step falls to first order when the step before it was shorter than this fraction of it
#: (r = h_{i-1} / h_i < 0.5): the last finite step of a discrete table's 'linspace' grid has r = 0.23, and there
#: dpmpp_3m_sde's variance error on an exact 4-D Gaussian was 46x at 20 steps and 3.0x at 100 (0.39x and 0.06x
#: with the rule; docs/benchmarks.md); on logsnr, karras and trailing grids no step has r < 0.5 at 10-100 steps
SDE_MIN_STEP_RATIO = 0.5


def _multistep(
    run: Run, order: int, lower_order_final: bool, eta: float = 0.0, published: bool = False, phi2_warmup: bool = False
) -> LinearPlan:
    """The multistep plan; with eta > 0 the SDE form (dpmpp_3m_sde's docstring): the phi's are taken at
    H = (1 + eta) h while the step ratios r stay those of h (they are the same for h and H), and a step whose
    predecessor is shorter than SDE_MIN_STEP_RATIO of it is first order. phi2_warmup: a
    second-order step is phi1 x0_i + phi2(H) D1, D1 = (x0_i - x0_{i-1}) / r (k-diffusion's 3M SDE warm-up),
    instead of the midpoint form phi1 (x0_i + D1 / 2)."""
    h, lam, alpha, sigma = _steps(run)
    orders = multistep_orders(h, order)
    h_phi = [(1 + eta) * v for v in h] if eta > 0 else h
    a, w, c = [], [], []
    for i in range(run.n):
        p = min(orders[i], run.n - i) if lower_order_final else orders[i]
        if eta > 0 and p > 1 and h[i - 1] < SDE_MIN_STEP_RATIO * h[i]:
            p = 1  # D1 = (x0_i - x0_{i-1}) / r would amplify the injected noise by 1 / r
        eta_h = eta * h[i] if eta > 0 else 0.0  # 0 * inf would be NaN on the final jump
        a.append(sigma[i + 1] / sigma[i] * math.exp(-eta_h))
        phi1 = -alpha[i + 1] * math.expm1(-h[i] - eta_h)
        if p == 2 and phi2_warmup:
            r, big_h = h[i - 1] / h[i], h_phi[i]
            phi2 = alpha[i + 1] * (math.expm1(-big_h) / big_h + 1)
            w.append([phi1 + phi2 / r, -phi2 / r])
        else:
            w.append(multistep_weights(h_phi, i, p, phi1, alpha[i + 1], published))
        c.append(sigma[i + 1] * math.sqrt(-math.expm1(-2 * eta_h)) if eta_h > 0 else 0.0)
    return LinearPlan(a, w, c if eta > 0 else None)


def dpmpp_2m(denoiser, x: Tensor, ts, *, cond=None, generator=None, callback=None, lower_order_final=False):
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2), second order, 1 NFE per step:

    x_{i+1} = sigma_{i+1}/sigma_i x_i - alpha_{i+1} expm1(-h_i) [(1 + 1/(2 r_i)) x0_i - 1/(2 r_i) x0_{i-1}],
    r_i = h_{i-1} / h_i. The first step (no history) is first order.
    """
    run = Run(denoiser, x, ts, cond=cond, generator=generator, callback=callback)
    return run_linear(run, _multistep(run, 2, lower_order_final))


def dpmpp_3m(
    denoiser,
    x: Tensor,
    ts,
    *,
    cond=None,
    generator=None,
    callback=None,
    lower_order_final: bool = False,
    published: bool = False,
) -> Tensor:
    """DPM-Solver++(3M): the third-order multistep update, data prediction, warming up through orders 1
    and 2. 1 NFE per step.

    The update is written out in `multistep_weights`. published=True reproduces the update of Lu et al.'s
    reference code (`multistep_dpm_solver_third_order_update`, copied by diffusers and k-diffusion), whose
    second difference D2 carries half the x0'' term; measured on the exact mixture ODE and on a pure
    quadrature, its error-vs-NFE slope tends to 2, against 3 for the default (tests/sampling).
    """
    run = Run(denoiser, x, ts, cond=cond, generator=generator, callback=callback)
    return run_linear(run, _multistep(run, 3, lower_order_final, published=published))


def dpmpp_2m_sde(denoiser, x: Tensor, ts, *, cond=None, generator=None, callback=None, eta: float = 1.0):
    """SDE-DPM-Solver++(2M) (Lu et al. 2022, sec. 5; k-diffusion `sample_dpmpp_2m_sde`, midpoint form, which
    reuses the 2M correction with r_i = h_{i-1} / h_i):

    x_{i+1} = sigma_{i+1}/sigma_i e^{-eta h} x_i + alpha_{i+1} (1 - e^{-(1+eta) h}) D_i
              + sigma_{i+1} sqrt(1 - e^{-2 eta h}) z,   D_i = x0_i + (x0_i - x0_{i-1}) / (2 r_i).
    eta = 0 is DPM-Solver++(2M); eta = 1 solves the reverse SDE. 1 NFE per step.
    """
    eta = check_unit_interval("eta", eta)
    run = Run(denoiser, x, ts, cond=cond, generator=generator, callback=callback)
    return run_linear(run, _multistep(run, 2, False, eta))


def dpmpp_3m_sde(
    denoiser,
    x: Tensor,
    ts,
    *,
    cond=None,
    generator=None,
    callback=None,
    eta: float = 1.0,
    lower_order_final: bool = False,
    published: bool = False,
) -> Tensor:
    """SDE-DPM-Solver++(3M) (Lu et al. 2022, DPM-Solver++ sec. 5, the SDE variant; k-diffusion
    `sample_dpmpp_3m_sde`, diffusers' sde-dpmsolver++ with solver_order=3): third-order multistep in the data
    prediction with the SDE noise term. 1 NFE per step.

    With H = (1 + eta) h the exact step of the reverse SDE (eta = 1) or of its eta-family is

    x_{i+1} = sigma_{i+1}/sigma_i e^{-eta h} x_i + alpha_{i+1} (1 + eta) int_0^h e^{-(1+eta)(h-u)} x0(lambda_i + u) du
              + sigma_{i+1} sqrt(1 - e^{-2 eta h}) z,

    and substituting v = (1 + eta) u turns the integral into the ODE's with h -> H and the same D1 = h x0',
    D2 = h^2 x0'': alpha_{i+1} [(1 - e^-H) x0_i + phi2(H) D1 + phi3(H) D2], phi2(H) = expm1(-H)/H + 1,
    phi3(H) = 1/2 - (expm1(-H) + H)/H^2, with D1, D2 from the past estimates exactly as in dpmpp_3m
    (`multistep_weights`, warm-up through orders 1 and 2). eta = 0 is dpmpp_3m itself.

    published=True is k-diffusion's sample_dpmpp_3m_sde step for step (tests/sampling/test_dpmpp_3m_sde.py):
    its D2 carries half the x0'' term (as in dpmpp_3m(published=True)) and its second-order warm-up step is
    phi1 x0_i + phi2(H) (x0_i - x0_{i-1}) / r rather than the midpoint form. (diffusers' order-3 SDE update
    has the D2 coefficient alpha ((1 - e^-H - H)/H^2 - 1/2), of order 1 instead of H/6.)
    """
    eta = check_unit_interval("eta", eta)
    run = Run(denoiser, x, ts, cond=cond, generator=generator, callback=callback)
    return run_linear(run, _multistep(run, 3, lower_order_final, eta, published, phi2_warmup=published))


def _ancestral(sig_from: float, sig_to: float, eta: float) -> tuple[float, float]:
    """k-diffusion's get_ancestral_step in sigma~ = sigma/alpha: (sigma_down, sigma_up) with
    sigma_up = min(sigma_to, eta sigma_to sqrt(1 - sigma_to^2 / sigma_from^2)), sigma_down^2 = sigma_to^2 - sigma_up^2."""
    up = min(sig_to, eta * sig_to * math.sqrt(max(1 - (sig_to / sig_from) ** 2, 0.0)))
    return math.sqrt(max(sig_to**2 - up**2, 0.0)), up


class SDEStep(NamedTuple):
    """Step i of dpmpp_sde, as Python floats: stage 1 to t_mid, x_mid = a1 x + w1 x0_i + c1 z_mid (only when
    two_stage), stage 2 to t_{i+1}, x_next = a2 x + w2 D + c2 z. On a two-stage step z is the increment of the
    same Brownian path over [t_{i+1}, t_i]: z = r_mid z_mid + r_rest z_rest, z_mid and z_rest the standardized
    increments over [t_mid, t_i] and [t_{i+1}, t_mid], r_mid^2 = (t_i - t_mid) / (t_i - t_{i+1}) = 1 - r_rest^2."""

    t_mid: float
    two_stage: bool
    a1: float
    w1: float
    c1: float
    a2: float
    w2: float
    c2: float
    r_mid: float
    r_rest: float


def _sde_plan(run: Run, eta: float, s_noise: float) -> list[SDEStep]:
    """Both ancestral stages of every step from the float64 grid (dpmpp_sde's docstring for the formulas); the
    process is evaluated once for all midpoints, the loop only assembles the plan."""
    process, n, t = run.process, run.n, run.t
    lam, alpha, sigma = floats(run.lam), floats(run.alpha), floats(run.sigma)
    two_stage = [math.isfinite(lam[i]) and math.isfinite(lam[i + 1]) for i in range(n)]
    t_half = floats(process.t_from_log_snr(0.5 * (run.lam[:-1] + run.lam[1:])))  # the log-SNR midpoint (r = 1/2)
    t_mid = torch.tensor([min(max(t_half[i], t[i + 1]), t[i]) if two_stage[i] else t[i] for i in range(n)], dtype=f64)
    a_mid, s_mid = floats(process.alpha(t_mid)), floats(process.sigma(t_mid))

    def stage(i: int, a_to: float, s_to: float) -> tuple[float, float, float]:
        """(a, w, c) of the ancestral exponential step from t_i to a time with (alpha, sigma) = (a_to, s_to)."""
        sig_i = sigma[i] / alpha[i] if alpha[i] > 0 else math.inf  # sigma~_i
        down, up = _ancestral(sig_i, s_to / a_to, eta)
        return a_to * down / sigma[i], a_to * (1 - alpha[i] * down / sigma[i]), a_to * up * s_noise

    plan = []
    for i, tm in enumerate(t_mid.tolist()):
        first = stage(i, a_mid[i], s_mid[i]) if two_stage[i] else (1.0, 0.0, 0.0)
        h_mid, h = t[i] - tm, t[i] - t[i + 1]
        shares = (math.sqrt(h_mid / h), math.sqrt((tm - t[i + 1]) / h)) if two_stage[i] else (1.0, 0.0)
        plan.append(SDEStep(tm, two_stage[i], *first, *stage(i, alpha[i + 1], sigma[i + 1]), *shares))
    return plan


def dpmpp_sde(
    denoiser, x: Tensor, ts, *, cond=None, generator=None, callback=None, eta: float = 1.0, s_noise: float = 1.0
) -> Tensor:
    """DPM-Solver++ SDE (k-diffusion `sample_dpmpp_sde`, r = 1/2): a two-stage stochastic solver, 2 NFE per step.

    In x~ = x/alpha, sigma~ = sigma/alpha, each stage is an ancestral exponential step from sigma~_i: go
    deterministically to sigma~_down with x~ <- sigma~_down/sigma~_i x~ + (1 - sigma~_down/sigma~_i) D, then add
    sigma~_up noise. Stage 1 goes to the log-SNR midpoint s with D = x0_i; stage 2 to t_{i+1} with D = x0 at
    the stage-1 point. In x-space: x_to = alpha_to (sigma~_down/sigma_i x + (1 - alpha_i sigma~_down/sigma_i) D)
    + alpha_to sigma~_up z. Steps with an infinite h (from alpha = 0 or into sigma = 0) take stage 2 only.

    The two stages cover the overlapping intervals [s, t_i] and [t_{i+1}, t_i], so their noises are increments
    of ONE Brownian path (SDEStep), as with k-diffusion's default Brownian-tree noise; drawing them
    independently biases the samples (their spread shrinks: tests/sampling/test_contract.py).
    """
    eta = check_unit_interval("eta", eta)
    s_noise = check_nonnegative("s_noise", s_noise)
    run = Run(denoiser, x, ts, cond=cond, generator=generator, callback=callback)
    plan = _sde_plan(run, eta, s_noise)
    at_mid = run.evaluator(torch.tensor([step.t_mid for step in plan], dtype=f64))
    x = run.like
    for i, step in enumerate(plan):
        t, t_next = run.t[i], run.t[i + 1]
        x0 = run.at(x, i).x0
        d, noise = x0, []
        if step.two_stage:
            # stage 1: ancestral step to the midpoint, D = x0_i
            x_mid = lincomb(x, step.a1, [(step.w1, x0)])
            if step.c1 != 0.0 or step.c2 != 0.0:
                z_mid, z_rest = run.noise(t, step.t_mid), run.noise(step.t_mid, t_next)
                x_mid.add_(z_mid, alpha=step.c1)
                noise = [(step.c2 * step.r_mid, z_mid), (step.c2 * step.r_rest, z_rest)]  # the path's W(t_i) - W(t_{i+1})
            d = at_mid(x_mid, i).x0
        elif step.c2 != 0.0:
            noise = [(step.c2, run.noise(t, t_next))]
        # stage 2: ancestral step to t_{i+1} from x_i, D = x0 at the midpoint
        x = run.done(i, lincomb(x, step.a2, [(step.w2, d), *noise]), x0)
    return x
