"""Multistep consistency sampling (Song et al. 2023, Algorithm 1).

With a consistency function f (an x0-predicting denoiser, difflab.param.consistency) and a descending grid
t_0 > t_1 > ... > t_n:

    x0_hat = f(x_{t_0}, t_0);   for i = 1..n-1:  x_{t_i} = alpha(t_i) x0_hat + sigma(t_i) z_i,  x0_hat = f(x_{t_i}, t_i)

and the result is the grid's end state alpha(t_n) x0_hat + sigma(t_n) z_n (x0_hat itself at t_n = 0). One
evaluation per step: steps = 1 is the one-step model, NFE = steps. The fresh noise z_i comes from the
generator (per-sample generators give per-sample reproducible draws). Song et al. write the re-noising in
the VE frame, x~ = x0_hat + sqrt(sigma~_i^2 - sigma~_min^2) z; the sigma_min correction scales the noise by
1 - sigma~_min^2 / (2 sigma~_i^2) to first order, 3e-6 at sigma~_i = 0.8 for sigma~_min = 0.002 (far below the
sample's own noise, though above float32 rounding at the lowest levels), and is left out, so the state is
exactly the process's x_{t_i}. Any x0 denoiser may be sampled this way (for an ordinary
diffusion denoiser it is a crude ancestral sampler); a consistency function's grid must start where
alpha > 0, e.g. schedule karras with sigma_max=80.
"""

from __future__ import annotations

from torch import Tensor

from difflab.sampling.core import Run, floats, lincomb
from difflab.utils.errors import DifflabError


def consistency(denoiser, x: Tensor, ts, *, cond=None, generator=None, callback=None) -> Tensor:
    """Multistep consistency sampling on the grid ts (module docstring); one denoiser call per step."""
    run = Run(denoiser, x, ts, cond=cond, generator=generator, callback=callback)
    if float(run.alpha[0]) == 0.0:
        raise DifflabError("the consistency sampler starts where alpha(t) > 0 (x / alpha is the consistency "
                           "function's input): start the grid below t = 1, e.g. --schedule karras "
                           "--schedule-option sigma_max=80")
    alpha, sigma = floats(run.alpha), floats(run.sigma)
    for i in range(run.n):
        x0 = run.at(x, i).x0
        terms = [(sigma[i + 1], run.noise(run.t[i], run.t[i + 1]))] if sigma[i + 1] > 0 else []
        x = run.done(i, lincomb(x0, alpha[i + 1], terms), x0)
    return x
