"""Improved precision/recall: limiting cases, a brute-force reference, chunking, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from difflab.metrics import manifold_radii, precision_recall
from difflab.utils import DifflabError


def _brute_force(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    d_rr, d_ff, d_fr = cdist(real, real), cdist(fake, fake), cdist(fake, real)
    r_real = np.sort(d_rr, axis=1)[:, k]  # column 0 is the point itself
    r_fake = np.sort(d_ff, axis=1)[:, k]
    precision = (d_fr <= r_real[None, :]).any(axis=1).mean()
    recall = (d_fr <= r_fake[:, None]).any(axis=0).mean()
    return float(precision), float(recall)


def test_identical_sets_give_one_one(gen):
    x = torch.randn(200, 5, generator=gen)
    assert precision_recall(x, x.clone()) == (1.0, 1.0)


def test_disjoint_far_sets_give_zero_zero(gen):
    x = torch.randn(100, 3, generator=gen)
    assert precision_recall(x, x + 100.0) == (0.0, 0.0)


def test_subset_has_full_precision_and_partial_recall(gen):
    real = torch.randn(400, 2, generator=gen)
    fake = real[real[:, 0] > 0.5]  # a mode-dropping model: realistic samples of one region only
    p, r = precision_recall(real, fake)
    assert p == 1.0 and r < 0.6
    p2, r2 = precision_recall(fake, real)  # mirror: a model that also covers what the data lacks
    assert r2 == 1.0 and p2 < 0.6


def test_matches_brute_force_and_is_chunk_independent(gen):
    real = torch.randn(150, 4, generator=gen)
    fake = torch.randn(120, 4, generator=gen) * 1.3 + 0.4
    ref = _brute_force(real.double().numpy(), fake.double().numpy(), 3)
    got = precision_recall(real, fake, k=3)
    assert got.precision == pytest.approx(ref[0]) and got.recall == pytest.approx(ref[1])
    assert precision_recall(real, fake, k=3, max_elements=500) == got  # many small chunks


def test_manifold_radii_are_kth_neighbour_distances():
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    torch.testing.assert_close(manifold_radii(x, k=1), torch.tensor([1.0, 1.0, 2.0, 4.0]))
    torch.testing.assert_close(manifold_radii(x, k=2), torch.tensor([3.0, 2.0, 3.0, 6.0]))


def test_bad_inputs():
    x = torch.randn(3, 2)
    with pytest.raises(DifflabError, match="k=3 needs more than k real samples"):
        precision_recall(x, torch.randn(10, 2))
    with pytest.raises(DifflabError, match=r"matrix \(N, F\)"):
        precision_recall(torch.randn(10), torch.randn(10, 2))
    with pytest.raises(DifflabError, match="feature dimensions differ"):
        precision_recall(torch.randn(10, 2), torch.randn(10, 3))
