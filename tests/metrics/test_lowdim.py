"""SW2, MMD, the SW2 floor and the memorization check against exact answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist, pdist

from difflab.metrics import memorization_check, mmd_rbf, sliced_wasserstein2, sw2_floor
from difflab.metrics.lowdim import median_bandwidth, random_directions
from difflab.utils import DifflabError


def test_sw2_zero_on_identical_sets(gen):
    x = torch.randn(300, 3, generator=gen)
    assert sliced_wasserstein2(x, x[torch.randperm(300, generator=gen)], 64, gen) == 0.0


def test_sw2_of_a_shift_is_the_projected_shift():
    # Y = X + mu: every sorted projection differs by theta.mu, so SW2^2 = mean_theta (theta.mu)^2 exactly,
    # whose expectation over uniform directions is ||mu||^2 / D.
    x = torch.randn(500, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mu = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    theta = random_directions(4, 2000, torch.Generator().manual_seed(7))
    exact = float((mu.double() @ theta).square().mean().sqrt())
    got = sliced_wasserstein2(x, x + mu, 2000, torch.Generator().manual_seed(7))
    assert got == pytest.approx(exact, rel=1e-10)
    assert got == pytest.approx(float(mu.norm()) / 2.0, rel=0.03)


def test_sw2_unequal_sizes_is_the_exact_quantile_integral():
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(1))
    # the empirical measure of x repeated twice is the same measure: W2 = 0 for every direction
    assert sliced_wasserstein2(x, torch.cat([x, x]), 32) == pytest.approx(0.0, abs=1e-12)
    # 1-D by hand: {0, 1} vs {0, 0.5, 1}; quantiles F^-1 = 0 on (0,1/2], 1 on (1/2,1];
    # G^-1 = 0 on (0,1/3], 0.5 on (1/3,2/3], 1 on (2/3,1] -> W2^2 = (1/6)(0.5)^2 + (1/6)(0.5)^2 = 1/12
    a, b = torch.tensor([[0.0], [1.0]]), torch.tensor([[0.0], [0.5], [1.0]])
    assert sliced_wasserstein2(a, b, 4) == pytest.approx(math.sqrt(1 / 12), rel=1e-12)


def test_sw2_reproducible_with_a_seed(gen):
    x, y = torch.randn(100, 5, generator=gen), torch.randn(100, 5, generator=gen)
    one = sliced_wasserstein2(x, y, 16, torch.Generator().manual_seed(3))
    assert one == sliced_wasserstein2(x, y, 16, torch.Generator().manual_seed(3))
    assert one != sliced_wasserstein2(x, y, 16, torch.Generator().manual_seed(4))


def test_mmd_zero_on_identical_sets(gen):
    x = torch.randn(200, 2, generator=gen)
    assert mmd_rbf(x, x.clone(), bandwidth=1.0) == pytest.approx(0.0, abs=1e-12)


def test_mmd_shifted_gaussians_closed_form():
    # X ~ N(0, s^2 I), Y ~ N(mu, s^2 I) in D dims, k = exp(-|a-b|^2 / (2h^2)):
    # MMD^2 = 2 c (1 - exp(-|mu|^2 / (2 (h^2 + 2 s^2)))), c = (h^2 / (h^2 + 2 s^2))^(D/2)
    g = torch.Generator().manual_seed(0)
    n, d, h, seeds = 1000, 2, 1.0, 8
    mu = torch.tensor([1.0, 0.5])
    c = (h**2 / (h**2 + 2)) ** (d / 2)
    expected = 2 * c * (1 - math.exp(-float(mu.square().sum()) / (2 * (h**2 + 2))))
    values = [mmd_rbf(torch.randn(n, d, generator=g), torch.randn(n, d, generator=g) + mu, h) for _ in range(seeds)]
    # unbiased: the mean over seeds is within 3.5 standard errors (one estimate's std is ~0.012 here)
    assert np.mean(values) == pytest.approx(expected, abs=3.5 * 0.012 / seeds**0.5)
    assert abs(mmd_rbf(torch.randn(n, d, generator=g), torch.randn(n, d, generator=g), h)) < 0.005  # same law


def test_mmd_unequal_sizes_matches_the_formula_and_chunks():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(30, 3, generator=g), torch.randn(45, 3, generator=g) + 0.3
    h = 0.8
    k = lambda a, b: np.exp(-cdist(a, b, "sqeuclidean") / (2 * h**2))  # noqa: E731
    xn, yn = x.double().numpy(), y.double().numpy()
    kxx, kyy, kxy = k(xn, xn), k(yn, yn), k(xn, yn)
    n, m = len(xn), len(yn)
    expected = (kxx.sum() - n) / (n * (n - 1)) + (kyy.sum() - m) / (m * (m - 1)) - 2 * kxy.mean()
    assert mmd_rbf(x, y, h) == pytest.approx(expected, rel=1e-10)
    assert mmd_rbf(x, y, h, max_elements=50) == pytest.approx(expected, rel=1e-10)


def test_median_bandwidth_is_the_median_pooled_distance(gen):
    x, y = torch.randn(40, 2, generator=gen), torch.randn(30, 2, generator=gen)
    pooled = torch.cat([x, y]).double().numpy()
    assert median_bandwidth(x, y) == pytest.approx(float(np.median(pdist(pooled))), rel=1e-12)
    assert mmd_rbf(x, y) == mmd_rbf(x, y, bandwidth=float(np.median(pdist(pooled))))


def test_sw2_floor_is_positive_reproducible_and_shrinks_with_n():
    sample = lambda n, g: torch.randn(n, 2, generator=g)  # noqa: E731
    small, large = sw2_floor(sample, 100, num_projections=64), sw2_floor(sample, 1600, num_projections=64)
    assert small == sw2_floor(sample, 100, num_projections=64)
    assert 0 < large < small / 2  # the floor decreases like n^(-1/2)


def test_memorization_held_out_vs_copies(gen):
    train = torch.randn(400, 6, generator=gen)
    heldout = torch.randn(200, 6, generator=gen)
    fresh = torch.randn(200, 6, generator=gen)
    honest = memorization_check(fresh, train, heldout)
    assert honest.ratio == pytest.approx(1.0, abs=0.15)
    assert honest.memorized_fraction < 0.05
    assert honest.generated_distances.shape == (200,) and honest.heldout_distances.shape == (200,)
    copies = memorization_check(train[:150], train, heldout)
    assert copies.ratio == 0.0 and copies.memorized_fraction == 1.0
    assert copies.threshold == pytest.approx(float(torch.quantile(honest.heldout_distances, 0.01)))


def test_lowdim_bad_inputs(gen):
    x = torch.randn(10, 2, generator=gen)
    with pytest.raises(DifflabError, match="dimensions differ"):
        sliced_wasserstein2(x, torch.randn(10, 3))
    with pytest.raises(DifflabError, match="'median'"):
        mmd_rbf(x, x, bandwidth="mean")
    with pytest.raises(DifflabError, match="at least 2 samples"):
        mmd_rbf(x[:1], x)
    with pytest.raises(DifflabError, match="disjoint held-out"):
        memorization_check(x, x, x)
    with pytest.raises(DifflabError, match=r"quantile must lie in \(0, 1\)"):
        memorization_check(x, x, x + 1, quantile=1.0)
