"""Dequantization and the bits/dim convention (data on L levels of [-1, 1], bin width 2 / (L - 1))."""

import math

import pytest
import torch

from difflab.likelihood import bin_width, check_levels, dequantize
from difflab.likelihood.result import make_result
from difflab.utils.errors import DifflabError


@pytest.mark.parametrize("levels", [17, 256])
def test_uniform_density_on_the_dequantized_cube_is_log2_levels_bits(levels):
    # p uniform on [-1 - Delta/2, 1 + Delta/2]^D (side L Delta): the discrete model is uniform over L^D points
    D, delta = 5, bin_width(levels)
    nll = torch.full((3,), D * math.log(levels * delta), dtype=torch.float64)
    r = make_result(nll, torch.zeros(3), D, levels, 0)
    assert torch.allclose(r.bits_per_dim, torch.full((3,), math.log2(levels), dtype=torch.float64), atol=1e-12)
    assert torch.allclose(r.nll, torch.full((3,), D * math.log(levels), dtype=torch.float64))


def test_dequantize_stays_in_its_bin_and_is_uniform():
    levels = 17
    g = torch.Generator().manual_seed(0)
    x = (torch.randint(0, levels, (4000, 3), generator=g).double() * bin_width(levels)) - 1
    y = dequantize(x, levels, torch.Generator().manual_seed(1))
    offset = (y - x) / bin_width(levels)
    assert float(offset.abs().max()) <= 0.5
    assert abs(float(offset.mean())) < 3 * math.sqrt(1 / 12 / offset.numel())  # U[-1/2, 1/2]: mean 0
    assert abs(float(offset.var()) - 1 / 12) < 0.005
    assert torch.equal(torch.round((y + 1) / bin_width(levels)), torch.round((x + 1) / bin_width(levels)))


@pytest.mark.parametrize("bad", [0.1, 1.125, -1.0625])
def test_data_off_the_declared_levels_is_one_clear_message(bad):
    with pytest.raises(DifflabError, match="not on the 17 declared levels"):
        check_levels(torch.tensor([[0.0, bad]]), 17)


def test_levels_below_two_is_one_clear_message():
    with pytest.raises(DifflabError, match="levels must be an integer >= 2"):
        bin_width(1)


def test_dequantized_bits_bound_the_discrete_nll_of_a_gaussian_from_above_and_tightly():
    # 1-D N(mu, s^2) on the 17 levels: E_u[-log p(x + Delta (u - 1/2))] in closed form, P(bin) by the CDF
    mu, s, levels = 0.1, 0.2, 17
    delta = bin_width(levels)
    x = torch.arange(levels, dtype=torch.float64) * delta - 1
    mean_nll = 0.5 * math.log(2 * math.pi * s**2) + ((x - mu) ** 2 + delta**2 / 12) / (2 * s**2)
    bound = make_result(mean_nll, torch.zeros(levels), 1, levels, 0).nll
    normal = torch.distributions.Normal(mu, s)
    discrete = -torch.log(normal.cdf(x + delta / 2) - normal.cdf(x - delta / 2))
    central = (x - mu).abs() < 2 * s  # where the bins hold the mass; the Jensen gap is O(Delta^2 / s^2)
    gap = bound - discrete
    assert bool((gap >= -1e-12).all())
    # Jensen's gap ~ Var_u(log p) / 2 = ((x - mu) / s^2)^2 Delta^2 / 24 (+ curvature terms of the same order)
    assert bool((gap[central] < (1 + ((x - mu) / s) ** 2)[central] * delta**2 / (12 * s**2)).all())
