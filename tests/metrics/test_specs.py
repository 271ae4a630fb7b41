"""The metric table drives every check: inputs, sample counts (before streaming when known), options, AUTO."""

from __future__ import annotations

import pytest
import torch

from difflab.metrics import METRICS, SPECS, EvalOptions, evaluate, resolve_metrics
from difflab.metrics.specs import AUTO_METRICS, INPUTS, build_accumulators, check_counts
from difflab.utils import DifflabError


class Untouchable:
    """A stream of `n` samples that must not be read (the counts alone must reject it)."""

    def __init__(self, n: int):
        self.n = n

    def __iter__(self):
        raise AssertionError("the stream was read although its count was already known to be too small")


def test_every_metric_has_one_spec_and_auto_follows_the_inputs():
    assert set(METRICS) == set(SPECS) and all(spec.needs <= set(INPUTS) for spec in SPECS.values())
    assert all(set(names) <= set(SPECS) for names in AUTO_METRICS.values())
    assert resolve_metrics("auto", "digits", ("real", "train", "labels"))[-2:] == ["memorization", "label_accuracy"]
    assert resolve_metrics("auto", "digits", ("real",)) == ["fdd", "class_coverage", "precision_recall"]
    # sw2 and mmd share one accumulator (one pass, one copy of the points); fdd has its own
    assert len(build_accumulators(["sw2", "mmd"], EvalOptions(), None)) == 1


def test_counts_are_checked_before_streaming_when_known(gen):
    x = torch.randn(30, 2, generator=gen)
    with pytest.raises(DifflabError, match=r"the inception score with is_splits=10 needs at least 10 samples, got 6"):
        evaluate(Untouchable(6), None, "is")
    with pytest.raises(DifflabError, match="sw2 and its floor on real samples needs at least 2 samples, got 1"):
        evaluate(x, x[:1], "sw2")
    with pytest.raises(DifflabError, match="kid_subset_size=50 on real samples needs at least 50"):
        check_counts(["kid"], EvalOptions(kid_subset_size=50), {"fake": 60, "real": 49})
    check_counts(["kid"], EvalOptions(kid_subset_size=50), {"fake": 60, "real": None})  # unknown yet: no verdict


@pytest.mark.parametrize(
    "option, message",
    [
        ({"is_splits": 0}, "is_splits must be an integer of at least 1; got 0"),
        ({"k": 1.5}, "k must be an integer of at least 1; got 1.5"),
        ({"kid_subset_size": 1}, "kid_subset_size must be an integer of at least 2"),
        ({"seed": -1}, "seed must be an integer of at least 0; got -1"),
        ({"memorization_quantile": 1.0}, r"memorization_quantile must lie in \(0, 1\)"),
    ],
)
def test_options_are_checked_once_when_built(option, message):
    with pytest.raises(DifflabError, match=message):
        EvalOptions(**option)


def test_sw2_ratio_of_flattened_images(gen):
    """Images are flattened like points: the same distribution sits near its floor, a shifted one far above."""
    real = torch.rand(400, 1, 4, 4, generator=gen) * 2 - 1
    same = evaluate(torch.rand(150, 1, 4, 4, generator=gen) * 2 - 1, real, "sw2", num_projections=64)
    shifted = evaluate(torch.rand(150, 1, 4, 4, generator=gen) * 1.6 - 0.6, real, "sw2", num_projections=64)
    assert 0.7 < same["sw2_ratio"] < 1.4 and shifted["sw2_ratio"] > 2.0
    assert same["sw2_ratio"] == pytest.approx(same["sw2_matched"] / same["sw2_floor"], rel=1e-12)
