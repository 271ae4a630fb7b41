"""The MeanFlow sampler: exact jumps with a learned average velocity (Geng et al. 2025, Algorithm 2).

With u(z, r, t) the average velocity of the probability-flow ODE over [r, t] (difflab.objectives.meanflow) and
a descending grid t_0 > t_1 > ... > t_n,

    z_{t_{i+1}} = z_{t_i} - (t_i - t_{i+1}) u(z_{t_i}, t_{i+1}, t_i),

one denoiser call per step: one step from t = 1 is the one-step model z_0 = z_1 - u(z_1, 0, 1); more steps
trade NFE for the model's error, as multistep consistency sampling does, without fresh noise. The denoiser is a
velocity denoiser whose network embeds the interval (cond["interval"] = t_i - t_{i+1}); a network without
that embedding refuses the interval with one message. A denoiser of another parameterization is read through
its probability-flow velocity alpha' x0_hat + sigma' eps_hat, and one that ignores the interval (an exact
mixture, say) makes this Euler's method in t: on rectified flow, DDIM.
"""

from __future__ import annotations

from torch import Tensor

from difflab.param.parameterization import VELOCITY, get_parameterization, ode_velocity
from difflab.sampling.core import Run, floats
from difflab.utils.cond import with_interval


def meanflow(denoiser, x: Tensor, ts, *, cond=None, generator=None, callback=None) -> Tensor:
    """The MeanFlow jumps on the grid ts (module docstring); 1 NFE per step, deterministic."""
    run = Run(denoiser, x, ts, cond=cond, generator=generator, callback=callback)
    param = get_parameterization(denoiser.parameterization)
    t = floats(run.ts)
    gaps = (run.ts[:-1] - run.ts[1:]).to(device=x.device, dtype=x.dtype)  # t_i - t_{i+1}, one transfer
    for i in range(run.n):
        u, k_i = run.at.raw(x, i, with_interval(cond, gaps[i].expand(x.shape[0])))
        pred = param.to_x0_eps(u, x, k_i)  # x0: the one-jump-to-0 estimate, for previews
        if param is not VELOCITY:
            u = ode_velocity(pred, k_i)
        x = run.done(i, x - (t[i] - t[i + 1]) * u, pred.x0)
    return x
