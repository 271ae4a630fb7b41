"""Toy 2-D distributions: shapes, determinism, analytic moments, and the exposed 8-Gaussian mixture."""

from __future__ import annotations

import math

import pytest
import torch

from difflab.data.toy2d import (
    EIGHT_GAUSSIANS_RADIUS,
    EIGHT_GAUSSIANS_STD,
    TOY_NAMES,
    TOY_NUM_CLASSES,
    eight_gaussians_mixture,
    sample_toy,
    sample_toy_labeled,
)
from difflab.utils.errors import DifflabError


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", TOY_NAMES)
def test_shape_dtype_and_determinism(name):
    a = sample_toy(name, 500, gen(1))
    assert a.shape == (500, 2) and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert torch.equal(a, sample_toy(name, 500, gen(1)))
    assert not torch.allclose(a, sample_toy(name, 500, gen(2)))
    x, labels = sample_toy_labeled(name, 500, gen(1), dtype=torch.float64)
    assert x.dtype == torch.float64 and torch.allclose(x.float(), a)
    if TOY_NUM_CLASSES[name] is None:
        assert labels is None
    else:
        assert labels.dtype == torch.int64 and set(labels.tolist()) == set(range(TOY_NUM_CLASSES[name]))


@pytest.mark.parametrize("name", TOY_NAMES)
def test_moments_match_the_documented_standardization(name):
    # Documented: mean exactly 0 and E||x||^2 = 2, from analytic constants. With 200k samples the
    # standard errors are about 0.003 (mean) and 0.005 (second moment).
    x = sample_toy(name, 200_000, gen(0), dtype=torch.float64)
    assert x.mean(0).abs().max() < 0.015
    assert abs(x.square().sum(1).mean().item() - 2.0) < 0.03


def test_eight_gaussians_parameters_are_exact():
    w, mu, var = eight_gaussians_mixture()
    assert w.shape == (8,) and mu.shape == (8, 2) and var.shape == (8, 2) and w.dtype == torch.float64
    assert torch.allclose(w.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert torch.allclose(mu.norm(dim=1), torch.full((8,), EIGHT_GAUSSIANS_RADIUS, dtype=torch.float64))
    assert torch.allclose(mu[2], torch.tensor([0.0, EIGHT_GAUSSIANS_RADIUS], dtype=torch.float64), atol=1e-12)
    # Mixture covariance sum_k w_k (mu_k mu_k^T + diag v_k) is the identity, mean is 0.
    cov = (w[:, None, None] * (mu[:, :, None] * mu[:, None, :] + torch.diag_embed(var))).sum(0)
    assert torch.allclose(cov, torch.eye(2, dtype=torch.float64), atol=1e-12)
    assert torch.allclose((w[:, None] * mu).sum(0), torch.zeros(2, dtype=torch.float64), atol=1e-12)


def test_eight_gaussians_samples_follow_the_exposed_mixture():
    w, mu, var = eight_gaussians_mixture()
    x, comp = sample_toy_labeled("8gaussians", 80_000, gen(3), dtype=torch.float64)
    counts = torch.bincount(comp, minlength=8).double() / len(comp)
    assert torch.allclose(counts, w, atol=0.01)
    # Per component: sample mean = mu_k, per-coordinate variance = v_k.
    for k in range(8):
        xk = x[comp == k]
        assert torch.allclose(xk.mean(0), mu[k], atol=0.01)
        assert torch.allclose(xk.var(0), var[k], rtol=0.05)
    # Squared distance to the nearest mean averages 2 v (2-D); a neighbouring mean is 5.3 std away.
    d2 = torch.cdist(x, mu).square().amin(1)
    assert abs(d2.mean().item() - 2 * EIGHT_GAUSSIANS_STD**2) < 0.03 * 2 * EIGHT_GAUSSIANS_STD**2
    assert (torch.cdist(x, mu).argmin(1) == comp).double().mean() > 0.98


def test_checkerboard_occupies_the_even_cells():
    x = sample_toy("checkerboard", 20_000, gen(4), dtype=torch.float64)
    # Undo the documented scaling sqrt(4/3): raw points lie in cells (i, j) of [-2, 2]^2 with i + j even.
    raw = x * math.sqrt(4.0 / 3.0)
    assert raw.abs().max() <= 2.0 + 1e-9
    cell = (raw + 2).floor().long().clamp(0, 3)
    assert ((cell[:, 0] + cell[:, 1]) % 2 == 0).all()


def test_bad_arguments():
    with pytest.raises(DifflabError, match="valid toy distributions are: 8gaussians"):
        sample_toy("circles", 10)
    with pytest.raises(DifflabError, match="positive integer"):
        sample_toy("moons", 0)
