"""Log-likelihood by the probability-flow ODE (Song et al. 2021, sec. 4.3 and app. D.2; seed 001).

The probability-flow ODE dx/dt = v(x, t) = alpha' x0_hat + sigma' eps_hat (difflab.param.ode_velocity)
transports p_t, so along a solution (instantaneous change of variables, Chen et al. 2018)

    d/dt log p_t(x_t) = -div v(x_t, t)   =>   log p_t0(x_t0) = log p_1(x_1) + int_t0^1 div v(x_t, t) dt.

The state x and the divergence integral are integrated jointly from t0 (the process's t_min) to 1 with
scipy's adaptive Runge-Kutta (the solver family of difflab.sampling.adaptive; its own solve cannot carry the
extra log-det component, so the joint system is integrated here, in t and in float64). The divergence is

* exact: the trace of the Jacobian by D batched vector-Jacobian products (autograd, small D), or
* Hutchinson's estimator (Hutchinson 1989; FFJORD, Grathwohl et al. 2019): div v = E[e^T (dv/dx) e] with
  E[e e^T] = I, k Rademacher or Gaussian probes drawn once per sample and held fixed along the path, each
  integrated as its own component. The k integrals are independent unbiased estimates of the exact
  integral on the same trajectory: their mean is the estimate, their std / sqrt(k) its standard error.

The prior is N(0, sigma(1)^2 I) unless `prior` (x_1 -> log p_1(x_1), per sample) is given. The solve runs in
float64 on the CPU; a network denoiser is called in its own dtype and device. With `levels` the data are uniformly dequantized first (difflab.likelihood.result).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import Tensor

from difflab.likelihood.result import LikelihoodResult, dequantize, make_result
from difflab.param.parameterization import coefficients, ode_velocity, to_x0_eps
from difflab.sampling.adaptive import METHODS
from difflab.utils.errors import DifflabError, check_choice

DIVERGENCES = ("exact", "hutchinson")
PROBES = ("rademacher", "gaussian")
f64 = torch.float64


def gaussian_prior(std: float):
    """log N(x; 0, std^2 I) per sample."""

    def log_prob(x1: Tensor) -> Tensor:
        flat = x1.reshape(x1.shape[0], -1)
        d = flat.shape[1]
        return -0.5 * (flat**2).sum(1) / std**2 - 0.5 * d * math.log(2 * math.pi * std**2)

    return log_prob


def draw_probes(k: int, shape: tuple[int, ...], kind: str, generator=None) -> Tensor:
    """k probes e (k, *shape) with E[e e^T] = I: Rademacher (+-1) or standard Gaussian, float64."""
    check_choice("probe", kind, PROBES)
    if kind == "gaussian":
        return torch.randn((k, *shape), generator=generator, dtype=f64)
    return torch.randint(0, 2, (k, *shape), generator=generator).to(f64) * 2 - 1


def network_placement(denoiser) -> tuple[torch.device, torch.dtype]:
    """Where a network denoiser's weights live (its inputs go there); float64 on the CPU otherwise."""
    params = getattr(denoiser, "parameters", None)
    first = next(iter(params()), None) if callable(params) else None
    return (first.device, first.dtype) if first is not None else (torch.device("cpu"), f64)


def velocity_and_divergence(denoiser, x: Tensor, t: float, cond, probes: Tensor | None) -> tuple[Tensor, Tensor]:
    """v(x, t) (B, ...) and div v: exact (B, 1) when probes is None, else e_j^T (dv/dx) e_j (B, k).

    x is float64 on the CPU; a network is called in its own dtype and device (autograd runs through the
    casts), the velocity is formed in float64."""
    process, param = denoiser.process, denoiser.parameterization
    device, dtype = network_placement(denoiser)
    B = x.shape[0]
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        t_b = torch.full((B,), t, dtype=f64)
        k = coefficients(param, process, t_b, x.ndim, f64)
        raw = denoiser(x.to(device, dtype), t_b.to(device), cond).to("cpu", f64)
        v = ode_velocity(to_x0_eps(param, raw, x, k), k)
        if probes is None:  # rows of the identity, batched: trace of the Jacobian
            D = x[0].numel()
            eye = torch.eye(D, dtype=f64).reshape(D, 1, *x.shape[1:]).expand(D, *x.shape)
            (jac_rows,) = torch.autograd.grad(v, x, eye, is_grads_batched=True)  # (D, B, ...)
            div = jac_rows.reshape(D, B, D).diagonal(dim1=0, dim2=2).sum(-1, keepdim=True)  # (B, 1)
        else:
            (vjp,) = torch.autograd.grad(v, x, probes, is_grads_batched=True)  # (k, B, ...) = e^T J
            div = (vjp * probes).flatten(2).sum(2).T  # (B, k)
    return v.detach(), div.detach()


@torch.no_grad()
def ode_log_likelihood(
    denoiser,
    x: Tensor,
    *,
    cond=None,
    divergence: str = "exact",
    probes: int = 4,
    probe: str = "rademacher",
    prior=None,
    t_start: float | None = None,
    levels: int | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-6,
    method: str = "RK45",
    generator: torch.Generator | None = None,
) -> LikelihoodResult:
    """-log p_t0(x) per sample by the probability-flow ODE (module docstring), in nats and bits/dim.

    `generator` draws the dequantization noise and the probes; results are deterministic under a seed.
    """
    check_choice("divergence", divergence, DIVERGENCES)
    check_choice("ODE method", method, METHODS)
    if divergence == "hutchinson" and (not isinstance(probes, int) or probes < 1):
        raise DifflabError(f"probes must be an integer >= 1 (k Hutchinson probes); got {probes!r}")
    if not (rtol > 0 and atol > 0):
        raise DifflabError(f"rtol and atol must be positive; got rtol={rtol!r}, atol={atol!r}")
    process = denoiser.process
    t0 = process.t_min if t_start is None else float(t_start)
    if not 0 <= t0 < 1:
        raise DifflabError(f"t_start must lie in [0, 1); got {t_start!r}")
    x0 = (dequantize(x.detach().cpu(), levels, generator) if levels is not None else x.detach().to(f64)).cpu()
    shape, B, D = x0.shape, x0.shape[0], x0[0].numel()
    e = draw_probes(probes, tuple(shape), probe, generator) if divergence == "hutchinson" else None
    m = 1 if e is None else probes

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        x_t = torch.from_numpy(y[: B * D]).reshape(shape)
        v, div = velocity_and_divergence(denoiser, x_t, float(t), cond, e)
        return np.concatenate([v.numpy().ravel(), div.numpy().ravel()])

    y0 = np.concatenate([x0.numpy().ravel(), np.zeros(B * m)])
    sol = solve_ivp(rhs, (t0, 1.0), y0, method=method, rtol=rtol, atol=atol)
    if not sol.success:
        raise DifflabError(f"the adaptive ODE solver failed: {sol.message}")
    y1 = torch.from_numpy(sol.y[:, -1].copy())
    x1, integrals = y1[: B * D].reshape(shape), y1[B * D :].reshape(B, m)
    log_p1 = (prior or gaussian_prior(process.prior_std()))(x1)
    nll = -(log_p1 + integrals.mean(1))
    if e is None:
        stderr = torch.zeros(B, dtype=f64)
    elif m == 1:
        stderr = torch.full((B,), math.nan, dtype=f64)  # one probe: no spread to estimate it from
    else:
        stderr = integrals.std(1) / math.sqrt(m)
    return make_result(nll, stderr, D, levels, sol.nfev)
