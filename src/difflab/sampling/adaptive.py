"""The probability-flow ODE solved adaptively to a tolerance (scipy.integrate.solve_ivp): the reference that
every deterministic sampler converges to.

The ODE is integrated where it is smooth for every process, in EDM's scaled variable x~ = x / alpha against
lambda = log-SNR (seed 001's PF-ODE dx/dt = alpha' x0 + sigma' eps rewritten with dsigma~ = -sigma~ dlambda):

    dx~ / dlambda = x0_hat(alpha x~, t(lambda)) - x~.

In lambda the discrete VP chain has no kinks and VP has no sqrt(t) singularity at t = 0. A start with
alpha = 0 (rectified flow at t = 1, where x~ is infinite) is first integrated in t, dx/dt = alpha' x0_hat +
sigma' eps_hat, down to lambda = 0; an end with sigma = 0 is reached by integrating to lambda = log_snr_cap and
taking the closed-form limit x = alpha x0_hat (error O(e^{-2 log_snr_cap})). The NFE is scipy's nfev (plus one
for that limit); `difflab.sample` reports it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import Tensor

from difflab.param.parameterization import Prediction, coefficients, ode_velocity, to_x0_eps
from difflab.sampling.core import Run, Step
from difflab.utils.errors import DifflabError, check_choice

METHODS = ("RK45", "DOP853", "RK23", "Radau", "BDF", "LSODA")
f64 = torch.float64


def probability_flow(
    denoiser,
    x: Tensor,
    ts,
    *,
    cond=None,
    generator=None,
    callback=None,
    rtol: float = 1e-8,
    atol: float = 1e-8,
    method: str = "RK45",
    log_snr_cap: float = 12.0,
) -> Tensor:
    """Integrate the probability-flow ODE from ts[0] to ts[-1] (interior grid times are ignored).

    The callback is called once, with the final state. Tolerances are scipy's (relative and absolute, on
    the flattened batch, which shares the adaptive steps).
    """
    check_choice("ODE method", method, METHODS)
    if not (rtol > 0 and atol > 0):
        raise DifflabError(f"rtol and atol must be positive; got rtol={rtol!r}, atol={atol!r}")
    run = Run(denoiser, x, ts, cond=cond, generator=generator, callback=callback)
    process, param = run.process, denoiser.parameterization
    shape, dtype, device = x.shape, x.dtype, x.device
    batch = shape[0]

    def predict(x_t: Tensor, t: float) -> tuple[Prediction, object]:
        t_b = torch.full((batch,), t, dtype=f64, device=device)
        k = coefficients(param, process, t_b, x_t.ndim, dtype)
        return to_x0_eps(param, denoiser(x_t, t_b, cond), x_t, k), k

    def solve(fun, span: tuple[float, float], y0: np.ndarray) -> np.ndarray:
        sol = solve_ivp(fun, span, y0, method=method, rtol=rtol, atol=atol)
        if not sol.success:
            raise DifflabError(f"the adaptive ODE solver failed: {sol.message}")
        return sol.y[:, -1]

    def as_tensor(y: np.ndarray) -> Tensor:
        return torch.from_numpy(y).reshape(shape).to(device=device, dtype=dtype)

    def lam_of(t: float) -> float:
        return float(process.log_snr(torch.tensor(t, dtype=f64)))

    def scalar(fn, t: float) -> float:
        return float(fn(torch.tensor(t, dtype=f64)))

    t0, t1 = run.t[0], run.t[-1]
    y = x.detach().to(f64).cpu().numpy().ravel().copy()
    t_start = t0
    if scalar(process.alpha, t0) == 0.0:  # segment in t, down to sigma~ = 1 (or the end)
        t_mid = max(float(process.t_from_log_snr(torch.tensor(0.0, dtype=f64))), t1)

        def velocity(t, y):
            pred, k = predict(as_tensor(y), float(t))
            return ode_velocity(pred, k).detach().to(f64).cpu().numpy().ravel()

        y = solve(velocity, (t0, t_mid), y)
        t_start = t_mid
    lam0, lam1 = lam_of(t_start), lam_of(t1)
    cap = not math.isfinite(lam1)
    lam_end = max(log_snr_cap, lam0) if cap else lam1
    y = y / scalar(process.alpha, t_start)  # x~ = x / alpha
    last = {}

    def relax(lam, y):
        t = float(process.t_from_log_snr(torch.tensor(float(lam), dtype=f64)))
        a = scalar(process.alpha, t)
        x_t = as_tensor(a * y)
        last["x0"] = predict(x_t, t)[0].x0
        return last["x0"].detach().to(f64).cpu().numpy().ravel() - y

    if lam_end > lam0:
        y = solve(relax, (lam0, lam_end), y)
    if cap:  # sigma(t1) = 0: x(t1) = alpha(t1) lim x~ = alpha(t1) x0_hat at the cap
        t_cap = float(process.t_from_log_snr(torch.tensor(lam_end, dtype=f64)))
        pred = predict(as_tensor(scalar(process.alpha, t_cap) * y), t_cap)[0]
        last["x0"] = pred.x0
        out = (scalar(process.alpha, t1) * pred.x0.to(f64)).to(dtype)
    else:
        out = as_tensor(scalar(process.alpha, t1) * y)
    if run.callback is not None:  # one report for the whole solve: interior grid times are not visited
        run.callback(Step(0, 1, t0, t1, out, last.get("x0", out)))
    return out
