"""evaluate(): agreement with the direct computations, streaming, seeds, folders and bad-input messages."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from difflab.metrics import (
    METRICS,
    FeatureStats,
    evaluate,
    evaluate_folders,
    frechet_distance_from_stats,
    load_image_folder_batches,
    precision_recall,
)
from difflab.utils import DifflabError


def _batches(x: torch.Tensor, sizes=(7, 50, 1, 100)):
    """Uneven batches, as a one-shot generator (consumed once), half of them as dicts like a DataLoader's."""
    start, i = 0, 0
    while start < x.shape[0]:
        b = x[start : start + sizes[i % len(sizes)]]
        yield {"x": b} if i % 2 else b
        start += b.shape[0]
        i += 1


def test_digit_metrics_match_direct_computations(digit_classifier, digits):
    x_train, _, x_test, y_test = digits
    r = evaluate(
        x_test, x_train, ["fdd", "precision_recall", "class_coverage", "label_accuracy"],
        labels=y_test, digit_classifier=digit_classifier, batch_size=100,
    )  # fmt: skip
    f_test, f_train = digit_classifier.features(x_test), digit_classifier.features(x_train)
    fdd = frechet_distance_from_stats(FeatureStats.from_features(f_test), FeatureStats.from_features(f_train))
    assert r["fdd"] == pytest.approx(fdd, rel=1e-9)
    p, rec = precision_recall(f_train, f_test)
    assert (r["precision"], r["recall"]) == (pytest.approx(p), pytest.approx(rec))
    assert r["label_accuracy"] == pytest.approx(digit_classifier.test_accuracy)
    assert r["class_coverage"] == 1.0 and r["class_entropy_normalized"] > 0.99 and r["mean_confidence"] > 0.9
    assert (r["n_fake"], r["n_real"]) == (360, 1437)


def test_default_classifier_comes_from_the_cache(digit_classifier, digits):
    x_train, _, x_test, _ = digits
    a = evaluate(x_test, x_train, "fdd")
    assert a["fdd"] == evaluate(x_test, x_train, "fdd", digit_classifier=digit_classifier)["fdd"]


def test_streaming_batches_equal_whole_tensors_and_seeds_reproduce(digit_classifier, digits):
    x_train, _, x_test, _ = digits
    names = ["fdd", "kdd", "precision_recall", "sw2", "mmd"]
    opts = dict(digit_classifier=digit_classifier, kid_subsets=5, kid_subset_size=100, num_projections=32)
    whole = evaluate(x_test, x_train[:400], names, **opts)
    streamed = evaluate(_batches(x_test), _batches(x_train[:400]), names, **opts)
    assert streamed.keys() == whole.keys()
    for key, value in whole.items():
        assert streamed[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    other_seed = evaluate(x_test, x_train[:400], ["kdd", "sw2"], seed=1, **opts)
    assert other_seed["kdd_mean"] != whole["kdd_mean"] and other_seed["sw2"] != whole["sw2"]


def test_frechet_distance_of_a_set_against_itself_is_zero(digit_classifier, digits):
    # digit features have dead (zero-variance) units, so the regularized branch is the one exercised
    _, _, x_test, _ = digits
    assert abs(evaluate(x_test, x_test, "fdd", digit_classifier=digit_classifier)["fdd"]) < 1e-8
    streamed = evaluate(_batches(x_test), x_test, "fdd", digit_classifier=digit_classifier)
    assert abs(streamed["fdd"]) < 1e-8  # float64 features: the batch split does not move them


def test_fid_kid_is_through_torchmetrics_with_a_custom_extractor(tiny_extractor, gen):
    real = torch.rand(120, 1, 8, 8, generator=gen) * 2 - 1
    fake = (torch.rand(90, 1, 8, 8, generator=gen) * 2 - 1) * 0.8
    r = evaluate(fake, real, ["fid", "kid", "is"], inception=tiny_extractor, kid_subsets=10, is_splits=3)
    ours = frechet_distance_from_stats(
        FeatureStats.from_features(tiny_extractor.features(fake)), FeatureStats.from_features(tiny_extractor.features(real))
    )
    assert r["fid"] == pytest.approx(ours, rel=1e-4)
    assert r["kid_mean"] > 0 and r["kid_std"] >= 0
    assert 1.0 < r["is_mean"] <= tiny_extractor.num_classes
    assert r["kid_mean"] == evaluate(fake, real, "kid", inception=tiny_extractor, kid_subsets=10)["kid_mean"]


def test_memorization_and_lowdim_on_points(gen):
    train, heldout = torch.randn(300, 2, generator=gen), torch.randn(200, 2, generator=gen)
    copies = evaluate(train[:100], heldout, ["memorization", "sw2", "mmd"], train=train, features="raw")
    assert copies["memorization_ratio"] == 0.0 and copies["memorized_fraction"] == 1.0
    fresh = evaluate(torch.randn(200, 2, generator=gen), heldout, ["memorization"], train=train, features="raw")
    assert fresh["memorization_ratio"] == pytest.approx(1.0, abs=0.2)
    same = evaluate(heldout, heldout, ["sw2", "mmd"])
    assert same["sw2"] == 0.0 and same["mmd"] == pytest.approx(0.0, abs=1e-12)


def test_progress_callback_and_uint8_input(digit_classifier, digits):
    _, _, x_test, _ = digits
    seen = []
    u8 = (x_test * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    r = evaluate(u8, x_test, "fdd", digit_classifier=digit_classifier, batch_size=100,
                 progress=lambda stage, n: seen.append((stage, n)))  # fmt: skip
    assert seen == [("fake", 0), ("fake", 100), ("fake", 200), ("fake", 300), ("fake", 360)] + [
        ("real", 0), ("real", 100), ("real", 200), ("real", 300), ("real", 360)
    ]
    assert r["fdd"] < 0.5  # quantization to 8 bits barely moves the features


def test_bad_inputs_give_one_clear_message(digit_classifier, digits, gen):
    _, y, x, _ = digits
    x = x[:20]
    opts = dict(digit_classifier=digit_classifier)
    with pytest.raises(DifflabError, match="unknown metric 'fidd'; valid metrics are: class_coverage, clip_score"):
        evaluate(x, x, "fidd")
    assert "fdd" in METRICS and "precision_recall" in METRICS
    with pytest.raises(DifflabError, match="unknown evaluate option 'kk'"):
        evaluate(x, x, "fdd", kk=3)
    with pytest.raises(DifflabError, match=r"fdd, precision_recall need\(s\) real samples to compare with: pass real="):
        evaluate(x, None, ["fdd", "precision_recall", "class_coverage"])
    with pytest.raises(DifflabError, match="pass train="):
        evaluate(x, x, "memorization")
    with pytest.raises(DifflabError, match="pass labels="):
        evaluate(x, None, "label_accuracy")
    with pytest.raises(DifflabError, match="20 samples, 19 labels"):
        evaluate(x, None, "label_accuracy", labels=y[:19])
    with pytest.raises(DifflabError, match="kid_subset_size=50 on generated samples needs at least 50 samples, got 20"):
        evaluate(x, x, "kdd", kid_subset_size=50, **opts)
    with pytest.raises(DifflabError, match="precision/recall with k=20 .* lower k"):
        evaluate(x, x, "precision_recall", k=20, **opts)
    with pytest.raises(DifflabError, match="fdd .* needs at least 2 samples, got 1"):
        evaluate(_batches(x[:1]), x, "fdd", **opts)  # a stream: caught after counting
    with pytest.raises(DifflabError, match=r"real samples have shape \(1, 16, 16\) but earlier samples have \(1, 8, 8\)"):
        evaluate(x, torch.zeros(5, 1, 16, 16), "fdd", **opts)
    with pytest.raises(DifflabError, match=r"must lie in \[-1, 1\].*\[0, 255\]"):
        evaluate(x * 127.5 + 127.5, x, "fdd", **opts)
    with pytest.raises(DifflabError, match="NaN or infinite"):
        evaluate(torch.full((4, 1, 8, 8), float("nan")), x, "fdd", **opts)
    with pytest.raises(DifflabError, match="tensors .* got list"):
        evaluate([[1, 2]], x, "fdd", **opts)


def _write_pngs(folder, images_u8: np.ndarray, mode: str = "L"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images_u8):
        Image.fromarray(img).convert(mode).save(folder / f"{i:04d}.png")


def test_folders_match_tensors_and_check_size_and_mode(tmp_path, digit_classifier, digits):
    x_train, _, x_test, _ = digits
    to_u8 = lambda x: (x[:, 0] * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()  # noqa: E731
    _write_pngs(tmp_path / "fake", to_u8(x_test[:60]))
    _write_pngs(tmp_path / "real", to_u8(x_train[:80]))
    got = evaluate_folders(tmp_path / "fake", tmp_path / "real", ["fdd", "precision_recall"],
                           digit_classifier=digit_classifier, batch_size=32)  # fmt: skip
    quantized = lambda x: torch.from_numpy(to_u8(x))[:, None].float() / 127.5 - 1  # noqa: E731
    expected = evaluate(quantized(x_test[:60]), quantized(x_train[:80]), ["fdd", "precision_recall"],
                        digit_classifier=digit_classifier)  # fmt: skip
    assert got == pytest.approx(expected)
    folder = load_image_folder_batches(tmp_path / "fake", batch_size=25)
    assert (folder.n, folder.size, folder.mode) == (60, (8, 8), "L")
    assert [b.shape[0] for b in folder] == [25, 25, 10]

    _write_pngs(tmp_path / "rgb", to_u8(x_test[:5]), mode="RGB")
    with pytest.raises(DifflabError, match=r"holds 8x8 greyscale images but .*rgb holds 8x8 colour ones"):
        evaluate_folders(tmp_path / "fake", tmp_path / "rgb", "fdd")
    big = np.zeros((3, 16, 16), dtype=np.uint8)
    _write_pngs(tmp_path / "big", big)
    with pytest.raises(DifflabError, match="8x8 greyscale images but .*big holds 16x16 greyscale"):
        evaluate_folders(tmp_path / "fake", tmp_path / "big", "fdd")
    Image.fromarray(big[0]).save(tmp_path / "fake" / "odd.png")
    with pytest.raises(DifflabError, match="odd.png is 16x16 greyscale; every image of a folder"):
        load_image_folder_batches(tmp_path / "fake")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DifflabError, match="no images"):
        load_image_folder_batches(tmp_path / "empty")
