"""FID, KID and IS through torchmetrics with custom feature modules (the offline-testable path)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance

from difflab.metrics import FeatureModule, FeatureStats, RawFeatures, frechet_distance_from_stats
from difflab.metrics.features import get_feature_extractor
from difflab.utils import DifflabError


class ClassIdClassifier:
    """'Images' are class ids (N, 1, 1, 1); logits put `scale` on that class: known conditionals."""

    name = "class-id"
    num_classes = 4

    def __init__(self, scale: float = 60.0):
        self.scale = scale

    def features(self, images):
        return self.logits(images)

    def logits(self, images):
        return self.scale * F.one_hot(images.flatten().long(), self.num_classes).float()


def _inception_score(extractor, images, splits=1):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        metric = InceptionScore(feature=FeatureModule(extractor, "logits"), splits=splits)
        metric.update(images)
        return metric.compute()[0].item()  # (std of a single split is nan, with a warning)


def test_inception_score_uniform_marginal_one_hot_conditionals_is_num_classes():
    ids = torch.arange(4).repeat(25).float()[:, None, None, None]
    assert _inception_score(ClassIdClassifier(), ids) == pytest.approx(4.0, rel=1e-6)


def test_inception_score_identical_conditionals_is_one():
    ids = torch.full((40, 1, 1, 1), 2.0)
    assert _inception_score(ClassIdClassifier(), ids) == pytest.approx(1.0, abs=1e-6)
    soft = ClassIdClassifier(scale=0.7)  # every sample has the same soft p(y|x): KL to the marginal is 0
    assert _inception_score(soft, ids) == pytest.approx(1.0, abs=1e-6)


def test_inception_score_matches_the_formula(tiny_extractor, gen):
    x = torch.randn(64, 1, 8, 8, generator=gen)
    logits = tiny_extractor.logits(x).double()
    p = logits.softmax(1).numpy()
    expected = np.exp(np.mean(np.sum(p * (np.log(p) - np.log(p.mean(0))), axis=1)))
    assert _inception_score(tiny_extractor, x) == pytest.approx(expected, rel=1e-5)


def _kid(extractor, real, fake, subsets, subset_size, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(feature=FeatureModule(extractor), subsets=subsets, subset_size=subset_size)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return metric.compute()[0].item()


def test_kid_full_subset_is_the_unbiased_polynomial_mmd(tiny_extractor, gen):
    real, fake = torch.randn(80, 1, 8, 8, generator=gen), torch.randn(80, 1, 8, 8, generator=gen) + 0.3
    fr, ff = tiny_extractor.features(real).double().numpy(), tiny_extractor.features(fake).double().numpy()
    d, m = fr.shape[1], len(fr)
    k = lambda a, b: (a @ b.T / d + 1.0) ** 3  # noqa: E731  (Bińkowski et al. 2018)
    kxx, kyy, kxy = k(fr, fr), k(ff, ff), k(fr, ff)
    expected = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()
    assert _kid(tiny_extractor, real, fake, 1, 80, 0) == pytest.approx(expected, rel=1e-4, abs=1e-7)


def test_kid_is_about_zero_on_identical_distributions(tiny_extractor):
    def draw(seed, shift=0.0):
        g = torch.Generator().manual_seed(seed)
        return torch.randn(200, 1, 8, 8, generator=g) + shift

    same = [_kid(tiny_extractor, draw(2 * s), draw(2 * s + 1), 10, 100, s) for s in range(6)]
    shifted = _kid(tiny_extractor, draw(100), draw(101, shift=0.5), 10, 100, 0)
    spread = np.std(same)
    assert abs(np.mean(same)) < 3 * spread / np.sqrt(len(same)) + 1e-6  # unbiased: centred on 0
    assert min(same) < 0  # an unbiased estimate of 0 is negative about half the time
    assert shifted > 20 * abs(np.mean(same)) and shifted > 5 * spread


def test_torchmetrics_fid_matches_our_frechet_distance(tiny_extractor, gen):
    real, fake = torch.randn(300, 1, 8, 8, generator=gen), torch.randn(300, 1, 8, 8, generator=gen) * 1.2 + 0.1
    fid = FrechetInceptionDistance(feature=FeatureModule(tiny_extractor))
    for r, f in zip(real.split(100), fake.split(100), strict=True):
        fid.update(r, real=True)
        fid.update(f, real=False)
    ours = frechet_distance_from_stats(
        FeatureStats.from_features(tiny_extractor.features(real)),
        FeatureStats.from_features(tiny_extractor.features(fake)),
    )
    assert fid.compute().item() == pytest.approx(ours, rel=1e-4)


def test_feature_module_and_registry_errors():
    with pytest.raises(DifflabError, match="has no num_features; pass num_features="):
        FeatureModule(RawFeatures())
    assert FeatureModule(RawFeatures(), num_features=64)(torch.zeros(2, 1, 8, 8)).shape == (2, 64)
    with pytest.raises(DifflabError, match="has no logits"):
        FeatureModule(RawFeatures(), "logits", num_features=3)(torch.zeros(2, 3))
    with pytest.raises(DifflabError, match="valid feature outputs are: features, logits"):
        FeatureModule(RawFeatures(), "probs", num_features=3)
    with pytest.raises(DifflabError, match="valid feature spaces are: digits, inception, raw"):
        get_feature_extractor("vgg")
    with pytest.raises(DifflabError, match="needs a `name` and a features"):
        get_feature_extractor(object())
