"""The level convention and the registry's checks."""

from __future__ import annotations

import pytest
import torch

from difflab.baselines import from_levels, to_levels
from difflab.baselines.registry import build_baseline
from difflab.utils.errors import DifflabError


def test_levels_round_trip_and_digits_spacing():
    j = torch.arange(17)
    x = from_levels(j, 17)
    assert x[0] == -1 and x[-1] == 1 and torch.allclose(x[1] - x[0], torch.tensor(1 / 8))
    assert torch.equal(to_levels(x, 17), j)
    assert torch.equal(to_levels(from_levels(torch.arange(256), 256), 256), torch.arange(256))


def test_off_level_data_and_unknown_family_get_one_message():
    with pytest.raises(DifflabError, match="not on the 17 declared levels"):
        to_levels(torch.tensor([0.01]), 17)
    with pytest.raises(DifflabError, match="unknown baseline 'flow'"):
        build_baseline("flow", (1, 8, 8), 17)


def test_the_registry_checks_options_against_the_builders_signature():
    from difflab.baselines import BASELINES, baseline_objective, check_baseline_options

    assert sorted(BASELINES) == ["gan", "pixelcnn", "vae"]
    assert check_baseline_options("vae", {"latent_dim": 4.0, "decoder": "logistic"}) == {"latent_dim": 4,
                                                                                        "decoder": "logistic"}
    with pytest.raises(DifflabError, match="baseline 'vae' .* has no option 'widht'; its options are: .*width"):
        check_baseline_options("vae", {"widht": 8})
    with pytest.raises(DifflabError, match="option r1_gamma: expected a number"):
        check_baseline_options("gan", {"r1_gamma": "lots"})
    with pytest.raises(DifflabError, match="has no option 'levels'"):
        check_baseline_options("pixelcnn", {"levels": 3})  # given by the data, not by model.options
    model = build_baseline("pixelcnn", (1, 4, 4), 17, hidden=4, n_layers=1)
    assert (model.family, model.nfe_per_sample, model.levels) == ("pixelcnn", 16, 17)
    assert callable(baseline_objective("gan"))


def test_wrong_data_shapes_get_one_message():
    with pytest.raises(DifflabError, match=r"a pixelcnn baseline needs data of shape \(C, H, W\)"):
        build_baseline("pixelcnn", (2,), 17)
    with pytest.raises(DifflabError, match=r"a vae baseline needs data of shape \(C, H, W\)"):
        build_baseline("vae", (2,), 17)
    with pytest.raises(DifflabError, match=r"\(D,\) or \(C, H, W\)"):
        build_baseline("gan", (4, 4), None)
    with pytest.raises(DifflabError, match="needs the data's number of levels"):
        build_baseline("pixelcnn", (1, 4, 4), None)


@pytest.mark.parametrize(("family", "levels", "options", "labels"), [
    ("gan", 5, {"latent_dim": 4, "width": 4, "d_width": 4}, None),
    ("vae", 5, {"latent_dim": 3, "width": 4, "mean": False}, None),
    ("vae", 2, {"latent_dim": 3, "width": 4, "mean": False, "decoder": "bernoulli"}, None),
    ("pixelcnn", 5, {"hidden": 6, "n_layers": 2, "kernel_size": 3, "num_classes": 3}, torch.tensor([0, 1, 2, 0, 1, 2])),
])
def test_per_sample_seeds_make_a_sample_independent_of_its_batch(family, levels, options, labels):
    """Seeds 10..15 in one batch or split 2 + 4: the same images (eval's samples do not depend on --batch-size);
    other seeds give other images."""
    torch.manual_seed(0)
    model = build_baseline(family, (1, 8, 8), levels, **options).eval()
    seeds = list(range(10, 16))
    whole = model.sample(6, seeds=seeds, labels=labels)
    split = torch.cat([model.sample(2, seeds=seeds[:2], labels=None if labels is None else labels[:2]),
                       model.sample(4, seeds=seeds[2:], labels=None if labels is None else labels[2:])])
    assert torch.allclose(whole, split, atol=1e-5, rtol=0)
    other = model.sample(6, seeds=list(range(20, 26)), labels=labels)
    assert (whole - other).abs().amax(dim=(1, 2, 3)).min() > 0  # every image changes with its seed
    with pytest.raises(DifflabError, match="either a generator or one seed per sample"):
        model.sample(2)
