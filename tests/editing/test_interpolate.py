"""slerp against its formula and its geometry; condition mixing is the product of experts."""

import math

import pytest
import torch

from difflab.analysis import GaussianMixture
from difflab.editing import MixedCondition, slerp, slerp_frames
from difflab.process import VPSDE
from difflab.utils.errors import DifflabError

f64 = torch.float64


def test_slerp_of_orthogonal_unit_vectors_is_the_circle():
    e0, e1 = torch.tensor([[1.0, 0.0]], dtype=f64), torch.tensor([[0.0, 1.0]], dtype=f64)
    for w in (0.0, 0.25, 0.5, 1.0):
        torch.testing.assert_close(slerp(e0, e1, w), torch.tensor([[math.cos(w * math.pi / 2),
                                                                    math.sin(w * math.pi / 2)]], dtype=f64))


def test_slerp_keeps_gaussian_noise_on_its_shell_and_ends_at_the_endpoints():
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(1, 4096, generator=g, dtype=f64), torch.randn(1, 4096, generator=g, dtype=f64)
    path = slerp_frames(z0, z1, 9)
    torch.testing.assert_close(path[0], z0[0])
    torch.testing.assert_close(path[-1], z1[0])
    norms = path.norm(dim=1) / math.sqrt(4096)
    assert float((norms - 1).abs().max()) < 0.03  # a straight line dips to ~0.71 at the middle
    assert float(((z0 + z1) / 2).norm() / math.sqrt(4096)) < 0.75
    # nearly equal angles between consecutive frames (exactly equal for equal norms)
    cos = torch.nn.functional.cosine_similarity(path[1:], path[:-1], dim=1)
    torch.testing.assert_close(cos, cos[:1].expand(8), atol=2e-3, rtol=0)


def test_slerp_of_parallel_vectors_is_the_straight_line():
    z = torch.tensor([[1.0, 2.0]], dtype=f64)
    torch.testing.assert_close(slerp(z, 3 * z, 0.5), 2 * z)


def test_mixed_condition_is_the_product_of_experts_score():
    """D_w's eps is (1 - w) eps(c0) + w eps(c1): the score of p(x|c0)^(1-w) p(x|c1)^w, one batched call."""
    mix = GaussianMixture(torch.ones(2), torch.tensor([[-1.0, 0.0], [1.0, 0.5]], dtype=f64), torch.full((2,), 0.1))
    d = mix.denoiser(VPSDE(), "eps")
    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(0), dtype=f64)
    t = torch.full((3,), 0.4, dtype=f64)
    c0, c1 = {"class_labels": torch.zeros(3, dtype=torch.long)}, {"class_labels": torch.ones(3, dtype=torch.long)}
    w = torch.tensor([0.0, 0.3, 1.0], dtype=f64)
    mixed = MixedCondition(d, c0, c1, w)
    score = lambda c: mix.score(x, t, VPSDE(), c)  # noqa: E731
    sigma = VPSDE().sigma(t)[:, None]
    expected = -sigma * ((1 - w[:, None]) * score(c0) + w[:, None] * score(c1))
    torch.testing.assert_close(mixed(x, t), expected)


def test_frames_must_be_at_least_two():
    with pytest.raises(DifflabError, match="frames must be an integer >= 2"):
        slerp_frames(torch.zeros(2), torch.ones(2), 1)
