"""EMA: the update rule against an explicit per-parameter loop, warm-up, copy_to and state round trip."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from difflab.train import EMA, ema_beta
from difflab.utils.errors import DifflabError


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_halflife_beta_matches_edm_formula():
    # EDM training_loop.py: ema_nimg = min(halflife, cur_nimg * rampup); beta = 0.5 ** (batch / ema_nimg)
    assert ema_beta(1000.0, images_seen=0, batch_images=10, num_updates=0) == 0.0  # first update copies
    assert ema_beta(1000.0, 4000, 10, 5) == pytest.approx(0.5 ** (10 / 200))  # ramp-up: 0.05 * 4000
    assert ema_beta(1000.0, 10**6, 10, 5) == pytest.approx(0.5 ** (10 / 1000))  # full half-life
    assert ema_beta(1000.0, 0, 10, 0, rampup=None) == pytest.approx(0.5 ** (10 / 1000))
    # half-life semantics: after h images with no ramp-up, the old weights keep exactly half their weight
    assert ema_beta(1000.0, 10**6, 10, 0) ** (1000 / 10) == pytest.approx(0.5)


def test_decay_beta_warms_up():
    assert ema_beta(0.999, 0, 8, num_updates=0) == pytest.approx(0.1)
    assert ema_beta(0.999, 0, 8, num_updates=90) == pytest.approx(91 / 100)
    assert ema_beta(0.999, 0, 8, num_updates=10**6) == 0.999


@pytest.mark.parametrize("ema", [64.0, 0.9])
def test_update_matches_explicit_loop(ema):
    model, batch = _model(0), 4
    ema_obj = EMA(model, ema=ema, rampup=0.5)
    reference = [p.detach().clone() for p in model.parameters()]
    images = 0
    for k in range(6):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model[1].running_mean.add_(1.0)
        beta = ema_obj.update(model, images, batch)
        expected = (
            0.5 ** (batch / max(min(ema, 0.5 * images), 1e-8)) if ema >= 1 else min(ema, (1 + k) / (10 + k))
        )
        assert math.isclose(beta, expected, rel_tol=1e-12)
        reference = [beta * r + (1 - beta) * p.detach() for r, p in zip(reference, model.parameters(), strict=True)]
        images += batch
    for r, q in zip(reference, ema_obj.module.parameters(), strict=True):
        torch.testing.assert_close(q, r, rtol=1e-6, atol=1e-6)
    # buffers are copied, not averaged
    torch.testing.assert_close(ema_obj.module[1].running_mean, model[1].running_mean)
    assert ema_obj.num_updates == 6
    assert not any(p.requires_grad for p in ema_obj.module.parameters())


def test_copy_to_and_state_dict_round_trip():
    model = _model(0)
    ema_obj = EMA(model, ema=0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    ema_obj.update(model, 0, 1)
    other = EMA(_model(1), ema=0.5)
    other.load_state_dict(ema_obj.state_dict())
    assert other.num_updates == 1
    target = _model(2)
    other.copy_to(target)
    for a, b in zip(target.state_dict().values(), ema_obj.module.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("bad", [0.0, -5.0])
def test_bad_ema_setting(bad):
    with pytest.raises(DifflabError, match="half-life in images"):
        EMA(_model(0), ema=bad)
