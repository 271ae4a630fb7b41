"""Fitted step placement: the grid family is well formed, the fitted grid beats the fixed grids on x_T it
was not fitted on, every call of the fit is counted, and a saved fit is reused at no further cost."""

import json

import numpy as np
import pytest
import torch

from difflab.nets import MLPNet
from difflab.param.denoiser import NetworkDenoiser
from difflab.process import DiscreteVP
from difflab.sampling import FittedGrid, fit_grid, make_grid, probability_flow, sample, unipc
from difflab.sampling.optimize import GridFamily
from difflab.utils.errors import DifflabError
from tests.sampling.cases import CASES, denoiser


class Tally:
    """An independent call counter, outside everything under test."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0
        self.parameterization, self.process = inner.parameterization, inner.process

    def __call__(self, x, t, cond=None):
        self.calls += 1
        return self.inner(x, t, cond)


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
    grid = fit_grid(D, 6, "unipc", shape=(2,), pilot=128, seed=5, max_evals=60, dtype=torch.float64).times
    x = torch.randn(256, 2, generator=torch.Generator().manual_seed(99), dtype=torch.float64)
    exact = probability_flow(D, x, [1.0, 0.0], rtol=1e-8, atol=1e-8)

    def rmse(ts):
        return float((unipc(D, x, ts) - exact).square().mean().sqrt())

    fixed = min(rmse(make_grid(D.process, s, 6)) for s in ("uniform", "logsnr", "karras", "shift"))
    assert rmse(grid) < fixed / 2


def test_fit_counts_every_call_it_makes():
    D = Tally(denoiser("vp"))
    fitted = fit_grid(D, 5, "dpmpp_2m", shape=(2,), pilot=16, max_evals=10, dtype=torch.float64)
    # one adaptive solve (tens of calls) and at least the 4 + 11 sampler runs of 5 calls each
    assert fitted.fit_nfe == D.calls and fitted.fit_nfe >= 15 * 5 + 10
    assert fitted.steps == 5 and fitted.times.numel() == 6 and fitted.pilot_rmse > 0


def test_optimized_schedule_through_sample_counts_the_fit():
    D = Tally(denoiser("flow"))
    out = sample(D, (8, 2), sampler="dpmpp_2m", steps=5, schedule="optimized", seed=0,
                 schedule_options={"pilot": 32, "max_evals": 10})
    assert out.nfe == D.calls and out.fit_nfe == D.calls - 5 and out.fit_nfe > 50
    assert out.times.numel() == 6 and bool(torch.isfinite(out.x).all())


def test_saved_fit_is_reused_at_no_cost(tmp_path):
    D = denoiser("vp")
    fitted = fit_grid(D, 4, "unipc", shape=(2,), pilot=16, max_evals=8, dtype=torch.float64)
    path = tmp_path / "fit.json"
    path.write_text(json.dumps(fitted.to_dict()))
    again = FittedGrid.from_dict(json.loads(path.read_text()))
    assert torch.equal(again.times, fitted.times) and again.fit_nfe == fitted.fit_nfe
    counted = Tally(D)
    out = sample(counted, (8, 2), sampler="unipc", steps=4, schedule=again, seed=0, dtype=torch.float64)
    assert out.nfe == counted.calls == 4 and out.fit_nfe == 0 and torch.equal(out.times, fitted.times)
    with pytest.raises(DifflabError, match="fitted for sampler 'unipc' with 4 steps"):
        sample(D, (8, 2), sampler="dpmpp_2m", steps=4, schedule=again)
    with pytest.raises(DifflabError, match="fitted for sampler 'unipc' with 4 steps"):
        sample(D, (8, 2), sampler="unipc", steps=5, schedule=again)
    with pytest.raises(DifflabError, match="not a difflab fitted grid"):
        FittedGrid.from_dict({"times": [1.0, 0.0]})
    with pytest.raises(DifflabError, match="lacks the field 'fit_nfe'"):
        FittedGrid.from_dict({k: v for k, v in fitted.to_dict().items() if k != "fit_nfe"})


def test_optimized_schedule_on_a_float32_network():
    torch.manual_seed(0)
    net = MLPNet(data_dim=3, hidden_dim=16, num_blocks=1)
    torch.nn.init.normal_(net.out_proj.weight, std=0.1)  # not the zero init: a network that does something
    D = NetworkDenoiser(net, DiscreteVP(), "eps").eval().requires_grad_(False)
    out = sample(D, (4, 3), sampler="unipc", steps=3, schedule="optimized", seed=0,
                 schedule_options={"pilot": 8, "max_evals": 4})
    assert out.x.dtype == torch.float32 and bool(torch.isfinite(out.x).all()) and out.nfe == out.fit_nfe + 3


def test_fit_grid_refuses_what_it_cannot_fit():
    D = denoiser("vp")
    with pytest.raises(DifflabError, match="deterministic fixed-grid sampler"):
        fit_grid(D, 5, "ddpm", shape=(2,))
    with pytest.raises(DifflabError, match="at least 2 samples"):
        fit_grid(D, 5, shape=(2,), pilot=1)
