"""The digit classifier: accuracy, FDD sanity, cache, determinism, class statistics, bad inputs."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from difflab.metrics import (
    ClassCounter,
    FeatureStats,
    class_statistics,
    frechet_distance_from_stats,
    load_digit_classifier,
)
from difflab.metrics.digit_classifier import RECIPE, classifier_paths, recipe_sha256, train_digit_classifier
from difflab.utils import DifflabError


def test_test_accuracy_above_97_percent(digit_classifier, digits):
    _, _, x_test, y_test = digits
    assert digit_classifier.test_accuracy > 0.97
    assert digit_classifier.accuracy(x_test, y_test) == pytest.approx(digit_classifier.test_accuracy)


def test_accepts_16x16_digits(digit_classifier, digits):
    from difflab.data import load_digits

    x16, y16 = load_digits("test", size=16)
    assert digit_classifier.accuracy(x16, y16) > 0.97
    _, _, x_test, _ = digits
    # 16x16 -> 8x8 is a 2x2 mean: equal to resizing by hand
    torch.testing.assert_close(digit_classifier.features(x16), digit_classifier.features(F.avg_pool2d(x16, 2)))
    assert digit_classifier.features(x_test.expand(-1, 3, -1, -1)).shape == (360, 64)  # RGB -> grey


def test_fdd_train_test_small_compared_with_noise(digit_classifier, digits):
    x_train, _, x_test, _ = digits
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(x_test.shape, generator=g) * 2 - 1
    stats = lambda x: FeatureStats.from_features(digit_classifier.features(x))  # noqa: E731
    train = stats(x_train)
    fdd_test = frechet_distance_from_stats(train, stats(x_test))
    fdd_noise = frechet_distance_from_stats(train, stats(noise))
    assert 0 < fdd_test < fdd_noise / 20


def test_cached_files_reload_identically(digit_classifier, difflab_cache):
    weights, meta_path = classifier_paths()
    assert weights.parent == difflab_cache and weights.is_file()
    meta = json.loads(meta_path.read_text())
    assert meta["recipe_sha256"] == recipe_sha256(RECIPE) == digit_classifier.recipe_sha256
    assert meta["test_accuracy"] == digit_classifier.test_accuracy
    again = load_digit_classifier()
    for (k, a), (_, b) in zip(digit_classifier.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert not list(difflab_cache.glob("*.tmp"))  # atomic writes leave no temp files


def test_training_is_deterministic_and_restores_global_state():
    short = {**RECIPE, "epochs": 1}
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    a = train_digit_classifier(short)
    assert torch.equal(torch.rand(3), before)  # the global RNG stream is untouched
    assert torch.get_num_threads() == threads and not torch.are_deterministic_algorithms_enabled()
    b = train_digit_classifier(short)
    for (k, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(p, q), k
    assert recipe_sha256(short) != recipe_sha256(RECIPE)


def test_stale_or_corrupt_cache_is_ignored(tmp_path):
    short = {**RECIPE, "epochs": 1}
    weights, meta_path = classifier_paths(tmp_path, short)
    weights.write_bytes(b"not safetensors")
    meta_path.write_text(json.dumps({"recipe_sha256": recipe_sha256(short), "test_accuracy": 1.0}))
    model = load_digit_classifier(tmp_path, recipe=short)  # retrains and overwrites
    assert model.test_accuracy < 1.0
    assert json.loads(meta_path.read_text())["test_accuracy"] == model.test_accuracy


def test_class_statistics_by_hand():
    logits = torch.full((6, 10), -20.0)
    pred = torch.tensor([0, 0, 1, 1, 2, 3])
    logits[torch.arange(6), pred] = 20.0
    s = class_statistics(logits, labels=torch.tensor([0, 0, 1, 5, 2, 3]))
    assert s.coverage == pytest.approx(0.4)
    p = torch.tensor([2, 2, 1, 1]) / 6
    assert s.entropy == pytest.approx(float(-(p * p.log()).sum()))
    assert s.normalized_entropy == pytest.approx(s.entropy / math.log(10))
    assert s.mean_confidence == pytest.approx(1.0, abs=1e-12)
    assert s.label_accuracy == pytest.approx(5 / 6)
    assert torch.equal(s.histogram[:4], torch.tensor([2, 2, 1, 1]))
    uniform = class_statistics(torch.zeros(4, 10))
    assert uniform.mean_confidence == pytest.approx(0.1) and uniform.label_accuracy is None


def test_bad_inputs(digit_classifier):
    with pytest.raises(DifflabError, match=r"square images \(N, 1 or 3, H, H\)"):
        digit_classifier.features(torch.zeros(2, 2, 8, 8))
    with pytest.raises(DifflabError, match="at least 8x8"):
        digit_classifier.features(torch.zeros(2, 1, 4, 4))
    with pytest.raises(DifflabError, match="one requested label per sample"):
        class_statistics(torch.zeros(3, 10), labels=torch.zeros(2))
    with pytest.raises(DifflabError, match=r"logits must have shape \(batch, 10\)"):
        ClassCounter(10).update(torch.zeros(3, 5))
