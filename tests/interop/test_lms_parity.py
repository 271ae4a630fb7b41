"""difflab's `lms` against diffusers' LMSDiscreteScheduler: the same linear multistep method in sigma.

Both integrate dx~/dsigma = eps_hat (x~ = x / alpha, sigma = sigma / alpha of the VP table) with the
Lagrange weights of the last four derivatives; diffusers integrates them with scipy's quad, difflab with
Gauss-Legendre. Both call the exact ring mixture's eps at exactly the scheduler's noise levels, so what is
compared is the multistep arithmetic alone.
"""

from __future__ import annotations

import pytest
import torch

from difflab.analysis import ring_mixture
from difflab.process import DiscreteVP
from difflab.sampling import SAMPLERS, check_grid
from tests.interop.tiny import diffusers

f64 = torch.float64


@pytest.mark.parametrize("steps", [6, 15])
def test_lms_matches_diffusers_lms_discrete_scheduler(steps):
    process = DiscreteVP()  # linear betas 1e-4..0.02, T = 1000: diffusers' defaults below
    D = ring_mixture().denoiser(process, "eps")
    sched = diffusers.LMSDiscreteScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4,
                                           beta_end=0.02)
    sched.set_timesteps(steps)
    sigmas = sched.sigmas.to(f64)  # steps noise levels, then 0
    ts = check_grid(torch.cat([process.t_from_log_snr(-sigmas[:-1].log()), torch.zeros(1, dtype=f64)]))
    z = torch.randn(64, 2, generator=torch.Generator().manual_seed(3), dtype=f64)

    x = z * (sigmas[0] ** 2 + 1).sqrt()  # diffusers' sigma-space state x~ = x_vp / alpha
    for i, tau in enumerate(sched.timesteps):
        x_vp = sched.scale_model_input(x, tau)
        eps = D(x_vp, ts[i].expand(len(x)))  # the eps of exactly the noise level sigmas[i]
        x = sched.step(eps, tau, x).prev_sample
    ours = SAMPLERS["lms"](D, z, ts)
    torch.testing.assert_close(ours, x, rtol=0, atol=2e-6)  # measured 2.7e-7: quad (epsrel 1e-4) on the weights
    gap = float((ours - x).abs().max())
    third = SAMPLERS["deis"](D, z, ts, order=3, basis="rho", lower_order_final=False)
    assert float((third - x).abs().max()) > 20 * gap  # the order matters at this precision: the test can fail
