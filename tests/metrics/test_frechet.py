"""Fréchet distance against closed forms and an independent eigen-decomposition; streaming statistics."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from difflab.metrics import FeatureStats, frechet_distance, frechet_distance_from_stats
from difflab.utils import DifflabError


def _random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def _independent_frechet(mu1, s1, mu2, s2) -> float:
    """Tr sqrt(S1 S2) = sum sqrt(eig(S1^1/2 S2 S1^1/2)), a symmetric eigenproblem (no sqrtm of a product)."""
    w, v = scipy.linalg.eigh(s1)
    root1 = (v * np.sqrt(w.clip(0))) @ v.T
    inner = scipy.linalg.eigvalsh(root1 @ s2 @ root1)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(inner.clip(0)).sum())


def test_diagonal_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    a, b = rng.uniform(0.1, 3.0, 6), rng.uniform(0.1, 3.0, 6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_matches_independent_scipy_computation_full_covariances():
    rng = np.random.default_rng(1)
    for d in (1, 5, 32):
        mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
        s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
        got = frechet_distance(torch.from_numpy(mu1), torch.from_numpy(s1), mu2, s2)
        assert got == pytest.approx(_independent_frechet(mu1, s1, mu2, s2), rel=1e-9, abs=1e-10)
        assert got == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-9)  # symmetric


def test_zero_for_identical_gaussians_and_float64_precision():
    rng = np.random.default_rng(2)
    s = _random_spd(rng, 16)
    mu = rng.standard_normal(16)
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-10
    # float32 inputs are promoted: the answer does not depend on the input dtype beyond its rounding
    got32 = frechet_distance(torch.tensor(mu, dtype=torch.float32), torch.tensor(s, dtype=torch.float32), mu, s)
    assert abs(got32) < 1e-5


def test_rank_deficient_covariances_match_the_reference():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 10))  # 4 samples in 10-D: rank-3 covariances
    y = rng.standard_normal((5, 10)) + 1.0
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    got = frechet_distance(x.mean(0), s1, y.mean(0), s2)
    assert got == pytest.approx(_independent_frechet(x.mean(0), s1, y.mean(0), s2), abs=1e-6)


def test_singular_product_adds_eps_to_both_covariances():
    b = np.array([0.5, 2.0, 4.0])
    eps = 1e-4
    got = frechet_distance(np.zeros(3), np.zeros((3, 3)), np.zeros(3), np.diag(b), eps=eps)
    # the exact distance between N(0, eps I) and N(0, diag(b) + eps I): sum (sqrt(eps) - sqrt(b + eps))^2
    expected = ((np.sqrt(eps) - np.sqrt(b + eps)) ** 2).sum()
    assert got == pytest.approx(expected, rel=1e-9)
    assert got != pytest.approx(b.sum(), rel=1e-4)  # the offset did change the value


def test_singular_covariance_against_itself_is_zero():
    # rank-deficient (dead features, as post-ReLU digit features have): the offset is used, and the
    # distance of a set to itself is 0, not the -2 d eps of unregularized traces (-1.28e-4 for d = 64)
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.standard_normal((200, 48)) * 5, np.zeros((200, 16))], axis=1)
    s = np.cov(x, rowvar=False)
    assert abs(frechet_distance(x.mean(0), s, x.mean(0), s)) < 1e-8


def test_streaming_stats_equal_numpy_batch_statistics():
    g = torch.Generator().manual_seed(0)
    feats = (torch.randn(1000, 7, generator=g, dtype=torch.float64) * torch.linspace(0.5, 3, 7) + 1e4).float()
    stats = FeatureStats()
    for chunk in feats.split(137):  # uneven float32 batches, accumulated in float64
        stats.update(chunk)
    feats = feats.double()
    ref = feats.numpy()
    assert stats.n == 1000 and stats.dim == 7
    np.testing.assert_allclose(stats.mean.numpy(), ref.mean(0), rtol=1e-12)
    # a mean of 1e4 with unit-scale spread: the shifted sums keep the covariance accurate
    np.testing.assert_allclose(stats.cov.numpy(), np.cov(ref, rowvar=False), rtol=1e-9, atol=1e-9)
    whole = FeatureStats.from_features(feats)
    assert frechet_distance_from_stats(stats, whole) == pytest.approx(0.0, abs=1e-8)


def test_stats_and_distance_bad_inputs():
    with pytest.raises(DifflabError, match="at least 2 samples"):
        _ = FeatureStats.from_features(torch.ones(1, 3)).cov
    with pytest.raises(DifflabError, match=r"shape \(batch, dim\)"):
        FeatureStats().update(torch.ones(3))
    stats = FeatureStats.from_features(torch.ones(2, 3))
    with pytest.raises(DifflabError, match="dimension changed from 3 to 4"):
        stats.update(torch.ones(2, 4))
    with pytest.raises(DifflabError, match="same length"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(DifflabError, match=r"must be \(2, 2\)"):
        frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))
