"""Path straightness of a denoiser's probability-flow ODE (Liu, Gong & Liu 2022, "Flow Straight and Fast",
Definition 2.3 / eq. 8):

    S = E_z int_0^1 || (x_1 - x_0) - v(x_t, t) ||^2 dt,

with x_t the ODE trajectory from x_1 (at t = 1, the start) to x_0 (t = 0, the end) and v = dx_t/dt the
ODE velocity alpha' x0_hat + sigma' eps_hat (difflab.param.ode_velocity). S = 0 exactly when every
trajectory is a straight line walked at constant speed, where one Euler step is exact; a k-rectified flow
with k >= 2 is straighter than the 1-rectified flow (their Theorem 3.7). Computed here in float64 on a
uniform grid of `steps` Euler steps: the trajectory is the Euler path x_{i+1} = x_i + (t_{i+1} - t_i) v_i,
and the integral the left Riemann sum sum_i (t_i - t_{i+1}) ||(x_1 - x_0) - v_i||^2 over the same
velocities (so x_1 - x_0 = sum_i (t_i - t_{i+1}) v_i exactly, and S >= 0 is the variance of the
velocity along the path). The squared norm is summed over the dimensions of one sample.
"""

from __future__ import annotations

import torch
from torch import Tensor

from difflab.param.parameterization import Coefficients, get_parameterization, ode_velocity
from difflab.sampling.grids import uniform_time
from difflab.utils.errors import DifflabError

f64 = torch.float64


def straightness(denoiser, x_1: Tensor, *, steps: int = 100, cond=None) -> Tensor:
    """S per sample (B,) float64 for trajectories starting at x_1 (B, ...), the state at t = 1 (the
    teacher's noise sigma(1) z; module docstring). `steps` Euler steps on the uniform grid; the denoiser
    is called in its own dtype (a network) with the state cast back to float64 after each call."""
    if steps < 1:
        raise DifflabError(f"straightness needs steps >= 1; got {steps}")
    process = denoiser.process
    param = get_parameterization(denoiser.parameterization)
    ts = uniform_time(process, steps)
    dtype = next((p.dtype for p in getattr(denoiser, "parameters", lambda: iter(()))()), f64)
    x = x_1.to(f64)
    velocities = []
    with torch.no_grad():
        for i in range(steps):
            t = ts[i].expand(x.shape[0])
            k = Coefficients(*(c.to(x.device) for c in param.coefficients(process, t, x.ndim, f64)))
            raw = denoiser(x.to(dtype), t.to(device=x.device, dtype=dtype), cond).to(f64)
            v = ode_velocity(param.to_x0_eps(raw, x, k), k)
            velocities.append(v)
            x = x + (ts[i + 1] - ts[i]) * v
    dt = (ts[:-1] - ts[1:]).to(x.device)  # (steps,)
    chord = x_1.to(f64) - x  # (B, ...): x_1 - x_0
    gaps = (chord - torch.stack(velocities)).pow(2).flatten(2).sum(2)  # (steps, B)
    return dt @ gaps  # (B,): sum_i (t_i - t_{i+1}) ||chord - v_i||^2
