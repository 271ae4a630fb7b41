"""Guidance metrics against hand-built cases, brute-force sums and closed-form Fréchet distances."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from difflab.data.shapes import Shapes, render_shapes
from difflab.metrics.guidance import (
    class_accuracy,
    class_conditional_fdd,
    mean_pairwise_distance,
    requested_probability,
    shape_accuracy,
)
from difflab.utils.errors import DifflabError


# ---- class accuracy and confidence ------------------------------------------------------------------
def test_class_accuracy_and_requested_probability_hand_built():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.4, 0.1], [0.2, 0.2, 0.6]],
                         dtype=torch.float64)
    logits = probs.log() + 3.0  # softmax is shift invariant
    requested = torch.tensor([0, 1, 1, 2])  # the third asks for class 1 but shows class 0
    assert class_accuracy(logits, requested) == 0.75
    assert requested_probability(logits, requested) == pytest.approx((0.7 + 0.6 + 0.4 + 0.6) / 4, abs=1e-12)


@pytest.mark.parametrize(
    "requested, message",
    [(torch.tensor([0, 1]), "one integer class per sample"), (torch.tensor([0.0, 1, 2, 0]), "integer"),
     (torch.tensor([0, 1, 3, 0]), "0..2")],
)
def test_class_accuracy_rejects_bad_requests(requested, message):
    with pytest.raises(DifflabError, match=message):
        class_accuracy(torch.zeros(4, 3), requested)


# ---- mean pairwise distance -------------------------------------------------------------------------
def brute_force_mean_distance(x: np.ndarray) -> float:
    pairs = list(itertools.combinations(range(len(x)), 2))
    return sum(float(np.linalg.norm(x[i] - x[j])) for i, j in pairs) / len(pairs)


@pytest.mark.parametrize("budget", [1, 7, 25, 1 << 22])  # one row per chunk, uneven chunks, one chunk
def test_mean_pairwise_distance_matches_brute_force(budget):
    x = torch.randn(11, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    expected = brute_force_mean_distance(x.reshape(11, -1).double().numpy())
    assert mean_pairwise_distance(x, budget=budget) == pytest.approx(expected, rel=1e-12)


def test_mean_pairwise_distance_hand_built():
    assert mean_pairwise_distance(torch.eye(5)) == pytest.approx(math.sqrt(2), rel=1e-12)  # a regular simplex
    assert mean_pairwise_distance(torch.tensor([[0.0, 0.0], [3.0, 4.0]])) == pytest.approx(5.0, rel=1e-12)
    assert mean_pairwise_distance(torch.ones(6, 1, 4, 4) * 0.3) == pytest.approx(0.0, abs=1e-6)  # collapse


def test_mean_pairwise_distance_within_classes():
    # class 7: {0, 1} -> mean 1; class 2: {0, 3, 3} -> pairs 3, 3, 0 -> mean 2; average over classes 1.5
    x = torch.tensor([[0.0], [0.0], [1.0], [3.0], [3.0]])
    labels = torch.tensor([7, 2, 7, 2, 2])
    assert mean_pairwise_distance(x, labels, budget=3) == pytest.approx(1.5, rel=1e-12)
    pooled = brute_force_mean_distance(x.numpy())  # ignores the classes: 1.8
    assert mean_pairwise_distance(x) == pytest.approx(pooled, rel=1e-12) and abs(pooled - 1.5) > 0.2

    g = torch.Generator().manual_seed(1)
    x, labels = torch.randn(30, 4, generator=g), torch.randint(0, 3, (30,), generator=g)
    per_class = [brute_force_mean_distance(x[labels == k].double().numpy()) for k in range(3)]
    assert mean_pairwise_distance(x, labels, budget=40) == pytest.approx(np.mean(per_class), rel=1e-12)


def test_mean_pairwise_distance_rejects_bad_input():
    with pytest.raises(DifflabError, match="N >= 2"):
        mean_pairwise_distance(torch.zeros(1, 3))
    with pytest.raises(DifflabError, match="class 4 has fewer than 2"):
        mean_pairwise_distance(torch.zeros(3, 2), torch.tensor([0, 0, 4]))


# ---- class-conditional Fréchet distance -------------------------------------------------------------
def two_class_features(n: int = 400, dim: int = 3):
    g = torch.Generator().manual_seed(2)
    real = torch.randn(2 * n, dim, generator=g, dtype=torch.float64) @ torch.randn(dim, dim, generator=g,
                                                                                 dtype=torch.float64)
    labels = torch.arange(2).repeat_interleave(n)
    return real, labels


def test_class_conditional_fdd_is_zero_for_identical_sets():
    real, labels = two_class_features()
    perm = torch.randperm(len(real), generator=torch.Generator().manual_seed(3))  # order must not matter
    result = class_conditional_fdd(real[perm], labels[perm], real, labels)
    assert result.mean == pytest.approx(0.0, abs=1e-7) and sorted(result.per_class) == [0, 1]


def test_class_conditional_fdd_closed_forms():
    real, labels = two_class_features()
    fake = real.clone()
    shift = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    fake[labels == 0] += shift  # same covariance, mean moved: d^2 = |shift|^2 = 5.25
    k1 = labels == 1
    mu1 = real[k1].mean(0)
    fake[k1] = mu1 + 0.5 * (real[k1] - mu1)  # diversity halved: d^2 = (1 - 0.5)^2 Tr S
    trace_s = float(torch.cov(real[k1].T).trace())
    result = class_conditional_fdd(fake, labels, real, labels)
    assert result.per_class[0] == pytest.approx(5.25, rel=1e-9)
    assert result.per_class[1] == pytest.approx(0.25 * trace_s, rel=1e-9)
    assert result.mean == pytest.approx((5.25 + 0.25 * trace_s) / 2, rel=1e-9)
    only_one = class_conditional_fdd(fake[k1], labels[k1], real, labels)  # averages the classes generated
    assert list(only_one.per_class) == [1] and only_one.mean == pytest.approx(0.25 * trace_s, rel=1e-9)


def test_class_conditional_fdd_rejects_bad_input():
    real, labels = two_class_features(n=5)
    with pytest.raises(DifflabError, match="class 1 has 5 generated and 0 real"):
        class_conditional_fdd(real, labels, real[labels == 0], labels[labels == 0])
    with pytest.raises(DifflabError, match="differ in width"):
        class_conditional_fdd(real[:, :2], labels, real, labels)
    with pytest.raises(DifflabError, match="one label per row"):
        class_conditional_fdd(real, labels[:3], real, labels)


# ---- shape accuracy ---------------------------------------------------------------------------------
def test_shape_accuracy_reads_rendered_shapes_exactly():
    data = Shapes(40, seed=4, size=32, jitter=1)
    images, asked = data.render(slice(None)), data.attributes.clone()
    assert shape_accuracy(images, asked) == {k: 1.0 for k in ("shape", "colour", "position", "size",
                                                              "shape_colour", "all")}
    asked[:10, 1] = (asked[:10, 1] + 1) % 7  # images 0..9 now show the wrong colour
    asked[5:15, 0] = (asked[5:15, 0] + 1) % 5  # images 5..14 the wrong shape
    acc = shape_accuracy(images, asked)
    assert acc["colour"] == 0.75 and acc["shape"] == 0.75 and acc["position"] == 1.0 and acc["size"] == 1.0
    assert acc["shape_colour"] == 25 / 40 and acc["all"] == 25 / 40


def test_shape_accuracy_blank_image_is_never_right():
    ids = torch.tensor([[2, 3, 4, 1], [0, 0, 0, 0]])
    images = render_shapes(ids[:, 0], ids[:, 1], ids[:, 2], ids[:, 3])
    images[1] = -1.0  # background only: reads -1 for every attribute
    acc = shape_accuracy(images, ids)
    assert all(acc[k] == 0.5 for k in ("shape", "colour", "position", "size", "shape_colour", "all"))


def test_shape_accuracy_rejects_bad_attributes():
    with pytest.raises(DifflabError, match=r"\(2, 4\) ids in the order"):
        shape_accuracy(torch.zeros(2, 3, 32, 32), torch.zeros(2, 2, dtype=torch.long))
