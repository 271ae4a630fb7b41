"""Optimized step placement: the grid family is well formed, and the fitted grid beats the fixed grids on
x_T it was not fitted on."""

import numpy as np
import pytest
import torch

from difflab.sampling import make_grid, probability_flow, sample, unipc
from difflab.sampling.optimize import GridFamily, optimized_grid
from difflab.utils.errors import DifflabError
from tests.sampling.cases import CASES, denoiser


@pytest.mark.parametrize("process", list(CASES))
@pytest.mark.parametrize("steps", [1, 2, 3, 8])
def test_family_grids_are_valid(process, steps):
    proc = CASES[process][0]
    family = GridFamily(proc, steps)
    for theta in (np.zeros(family.size), np.linspace(-2, 2, family.size)):
        ts = family.times(theta)
        assert ts.numel() == steps + 1 and float(ts[0]) == 1.0 and float(ts[-1]) == 0.0


def test_flat_shape_is_uniform_in_log_snr_between_the_ends():
    proc = CASES["vp"][0]
    family = GridFamily(proc, 9)
    theta = family.encode(0.0, 0.6)
    lam = proc.log_snr(family.times(theta))[:-1]  # drop the data end (lambda = inf)
    lam_a, lam_b = family.ends(theta)
    gaps = lam[1:] - lam[:-1]
    torch.testing.assert_close(gaps, gaps.mean().expand_as(gaps), rtol=1e-6, atol=1e-9)
    assert abs(float(lam[0]) - lam_a) < 1e-6 and abs(float(lam[-1]) - lam_b) < 1e-6


def test_fitted_grid_beats_fixed_grids_on_fresh_samples():
    D = denoiser("vp")
    grid = optimized_grid(D, (2,), 6, sampler="unipc", pilot=128, seed=5, max_evals=60)
    x = torch.randn(256, 2, generator=torch.Generator().manual_seed(99), dtype=torch.float64)
    exact = probability_flow(D, x, [1.0, 0.0], rtol=1e-8, atol=1e-8)

    def rmse(ts):
        return float((unipc(D, x, ts) - exact).square().mean().sqrt())

    fixed = min(rmse(make_grid(D.process, s, 6)) for s in ("uniform", "logsnr", "karras", "shift"))
    assert rmse(grid) < fixed / 2


def test_optimized_schedule_through_sample():
    D = denoiser("flow")
    out = sample(D, (8, 2), sampler="dpmpp_2m", steps=5, schedule="optimized", seed=0,
                 schedule_options={"pilot": 32, "max_evals": 10})
    assert out.nfe == 5 and out.times.numel() == 6 and bool(torch.isfinite(out.x).all())


def test_optimized_grid_refuses_what_it_cannot_fit():
    D = denoiser("vp")
    with pytest.raises(DifflabError, match="deterministic fixed-grid sampler"):
        optimized_grid(D, (2,), 5, sampler="ddpm")
    with pytest.raises(DifflabError, match="at least 2 samples"):
        optimized_grid(D, (2,), 5, pilot=1)
