"""Parameterization conversions: exact round trips, Tweedie's score, the probability-flow velocity."""

import math

import pytest
import torch

from difflab.param import (
    PARAMETERIZATIONS,
    EDMDenoiser,
    NetworkDenoiser,
    coefficients,
    ode_velocity,
    score,
    target,
    to_x0_eps,
)
from difflab.process import VESDE, VPSDE, CustomProcess, DiscreteVP, RectifiedFlow

f64 = torch.float64
PROCESSES = [
    DiscreteVP(),
    VPSDE(),
    VESDE(),
    RectifiedFlow(),
    CustomProcess(lambda t: torch.cos(t * math.pi / 2), lambda t: torch.sin(t * math.pi / 2)),
]


@pytest.mark.parametrize("process", PROCESSES, ids=repr)
@pytest.mark.parametrize("src", PARAMETERIZATIONS)
@pytest.mark.parametrize("dst", PARAMETERIZATIONS)
def test_every_pair_round_trips(process, src, dst, gen):
    """x0, eps -> prediction in src -> (x0, eps) -> prediction in dst -> (x0, eps): all to 1e-6."""
    x0 = torch.randn(16, 3, 4, 4, generator=gen, dtype=f64)
    eps = torch.randn(16, 3, 4, 4, generator=gen, dtype=f64)
    t = torch.linspace(0.05, 0.95, 16, dtype=f64)
    x_t = process.sample_xt(x0, t, eps)
    k_src = coefficients(src, process, t, 4, f64)
    k_dst = coefficients(dst, process, t, 4, f64)
    back = to_x0_eps(src, target(src, x0, eps, k_src), x_t, k_src)
    again = to_x0_eps(dst, target(dst, back.x0, back.eps, k_dst), x_t, k_dst)
    torch.testing.assert_close(again.x0, x0, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(again.eps, eps, rtol=1e-6, atol=1e-6)


def test_targets_are_the_seed_formulas(gen):
    x0, eps = torch.randn(8, 2, generator=gen, dtype=f64), torch.randn(8, 2, generator=gen, dtype=f64)
    t = torch.rand(8, generator=gen, dtype=f64) * 0.9 + 0.05
    rf = RectifiedFlow()
    k = coefficients("velocity", rf, t, 2, f64)
    torch.testing.assert_close(target("velocity", x0, eps, k), eps - x0)  # seed 003: v = z - x
    vp = VPSDE()
    k = coefficients("v", vp, t, 2, f64)
    a, s = vp.alpha(t)[:, None], vp.sigma(t)[:, None]
    torch.testing.assert_close(target("v", x0, eps, k), a * eps - s * x0)  # Salimans & Ho
    torch.testing.assert_close(target("eps", x0, eps, k), eps)
    torch.testing.assert_close(target("x0", x0, eps, k), x0)


@pytest.mark.parametrize("process", PROCESSES, ids=repr)
def test_velocity_is_the_probability_flow_drift(process, gen):
    """alpha' x0 + sigma' eps == f(t) x - 1/2 g(t)^2 score (Song et al. 2021) for exact predictions."""
    x0 = torch.randn(10, 3, generator=gen, dtype=f64)
    eps = torch.randn(10, 3, generator=gen, dtype=f64)
    t = torch.linspace(0.1, 0.9, 10, dtype=f64)
    x_t = process.sample_xt(x0, t, eps)
    k = coefficients("eps", process, t, 2, f64)
    pred = to_x0_eps("eps", eps, x_t, k)
    sde_form = process.sde_drift(x_t, t) - 0.5 * process.diffusion_sq(t)[:, None] * score(pred, k)
    torch.testing.assert_close(ode_velocity(pred, k), sde_form, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(score(pred, k), -eps / process.sigma(t)[:, None])


class _Affine(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.7))

    def forward(self, x, c_noise, cond=None):
        return self.w * x + c_noise[:, None] * 1e-3


def test_network_denoiser_passes_scaled_time():
    d = NetworkDenoiser(_Affine(), VPSDE(), "eps")
    x = torch.zeros(3, 2)
    out = d(x, torch.tensor([0.0, 0.5, 1.0]))
    torch.testing.assert_close(out[:, 0], torch.tensor([0.0, 0.5, 1.0]))  # 1000 t * 1e-3


def test_edm_preconditioning_coefficients():
    """With F = 0 the EDM denoiser returns c_skip x / alpha, c_skip = sd^2 / (sigma~^2 + sd^2)."""

    class Zero(torch.nn.Module):
        def forward(self, x, c_noise, cond=None):
            self.c_noise, self.x_in = c_noise, x
            return torch.zeros_like(x)

    net, ve = Zero(), VESDE()
    d = EDMDenoiser(net, ve, sigma_data=0.5)
    x = torch.full((2, 1), 3.0, dtype=f64)
    t = torch.tensor([0.2, 0.8], dtype=f64)
    s = ve.sigma(t)
    out = d(x, t)
    torch.testing.assert_close(out[:, 0], 3.0 * 0.25 / (s**2 + 0.25))
    torch.testing.assert_close(net.c_noise, torch.log(s) / 4)
    torch.testing.assert_close(net.x_in[:, 0], 3.0 / torch.sqrt(s**2 + 0.25))
