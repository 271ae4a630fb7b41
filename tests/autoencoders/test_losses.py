"""Autoencoder losses at known values: reconstruction, hinge and non-saturating GAN losses at given
logits, the adaptive weight against gradients worked out by hand, the perceptual hook; the patch
discriminator's logits map."""

from __future__ import annotations

import math

import pytest
import torch

from difflab.autoencoders.discriminator import PatchDiscriminator, patch_output_size
from difflab.autoencoders.losses import (
    adaptive_weight,
    discriminator_loss,
    generator_loss,
    hinge_d_loss,
    non_saturating_d_loss,
    perceptual_loss,
    reconstruction_loss,
)
from difflab.utils.errors import DifflabError


def softplus(v: float) -> float:
    return math.log1p(math.exp(v))


REAL = torch.tensor([[[[2.0, 0.5]]], [[[-1.0, 0.0]]]])  # (B=2, 1, 1, 2) patch logits
FAKE = torch.tensor([[[[-0.5, 3.0]]], [[[-2.0, 1.0]]]])


def test_reconstruction_losses():
    x = torch.zeros(2, 1, 1, 2)
    x_hat = torch.tensor([[[[1.0, -3.0]]], [[[0.5, 0.5]]]])
    assert reconstruction_loss(x, x_hat, "l1").tolist() == [2.0, 0.5]
    assert reconstruction_loss(x, x_hat, "l2").tolist() == [5.0, 0.25]
    with pytest.raises(DifflabError, match="l1, l2"):
        reconstruction_loss(x, x_hat, "l3")


def test_hinge_losses_at_known_logits():
    # sample 0: real relu(1-2)=0, relu(1-.5)=.5 -> .25; fake relu(1-.5)=.5, relu(1+3)=4 -> 2.25
    # sample 1: real relu(2)=2, relu(1)=1 -> 1.5;       fake relu(-1)=0, relu(2)=2 -> 1
    torch.testing.assert_close(hinge_d_loss(REAL, FAKE), torch.tensor([0.5 * (0.25 + 2.25), 0.5 * (1.5 + 1.0)]))
    torch.testing.assert_close(discriminator_loss(REAL, FAKE, "hinge"), hinge_d_loss(REAL, FAKE))
    torch.testing.assert_close(generator_loss(FAKE, "hinge"), torch.tensor([-1.25, 0.5]))


def test_non_saturating_losses_at_known_logits():
    d0 = 0.5 * ((softplus(-2.0) + softplus(-0.5)) / 2 + (softplus(-0.5) + softplus(3.0)) / 2)
    d1 = 0.5 * ((softplus(1.0) + softplus(0.0)) / 2 + (softplus(-2.0) + softplus(1.0)) / 2)
    torch.testing.assert_close(non_saturating_d_loss(REAL, FAKE), torch.tensor([d0, d1]))
    torch.testing.assert_close(discriminator_loss(REAL, FAKE, "non_saturating"), torch.tensor([d0, d1]))
    g = [(softplus(0.5) + softplus(-3.0)) / 2, (softplus(2.0) + softplus(-1.0)) / 2]
    torch.testing.assert_close(generator_loss(FAKE, "non_saturating"), torch.tensor(g))
    with pytest.raises(DifflabError, match="hinge, non_saturating"):
        generator_loss(FAKE, "wasserstein")


def test_adaptive_weight_against_hand_gradients():
    """rec = a.w (gradient a), g = (b.w)^2 (gradient 2 (b.w) b): lambda = |a| / (|2 (b.w) b| + 1e-4)."""
    a, b = torch.tensor([3.0, 4.0, 0.0]), torch.tensor([1.0, 2.0, 2.0])
    w = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    hidden = w * 1.0  # a graph both losses share, as the decoder's output is
    rec, g = (a * hidden).sum(), (b * hidden).sum() ** 2
    bw = float(b @ w.detach())  # 2.5
    expected = 5.0 / (abs(2 * bw) * 3.0 + 1e-4)
    lam = adaptive_weight(rec, g, w)
    assert lam.item() == pytest.approx(expected, rel=1e-6) and not lam.requires_grad
    (rec + g).backward()  # the graph is kept for the real backward
    # clamping: a GAN loss with no gradient at w gives |a| / 1e-4 = 5e4, clamped to 1e4
    flat = torch.zeros((), requires_grad=True)
    rec2, g2 = (a * (w * 1.0)).sum(), (w * 0.0).sum() + flat
    assert adaptive_weight(rec2, g2, w).item() == 1e4


def test_perceptual_hook_uses_the_users_features():
    conv = torch.nn.Conv2d(3, 4, 1)
    x, x_hat = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = perceptual_loss(lambda v: [conv(v), conv(v).relu()], x, x_hat)
    norm = lambda f: torch.nn.functional.normalize(f, dim=1, eps=1e-10)  # noqa: E731
    expected = sum((norm(f(x)) - norm(f(x_hat))).square().flatten(1).mean(1)
                   for f in (conv, lambda v: conv(v).relu()))
    torch.testing.assert_close(loss, expected.detach())
    assert perceptual_loss(conv, x, x).abs().max() == 0
    loss.sum().backward()
    assert x_hat.grad.abs().sum() > 0


@pytest.mark.parametrize(("size", "n_layers"), [(16, 2), (32, 3), (24, 1)])
def test_patch_discriminator_logit_map(size, n_layers):
    d = PatchDiscriminator(in_channels=3, channels=8, n_layers=n_layers)
    out = d(torch.randn(2, 3, size, size))
    side = patch_output_size(size, n_layers)
    assert out.shape == (2, 1, side, side) and side == size // 2**n_layers - 2


def test_patch_discriminator_too_small_images_and_norms():
    with pytest.raises(DifflabError, match="at least 24x24"):
        PatchDiscriminator(channels=8, n_layers=3)(torch.zeros(1, 3, 16, 16))
    for norm in ("group", "none"):
        assert PatchDiscriminator(channels=8, n_layers=2, norm=norm)(torch.randn(2, 3, 16, 16)).shape == (2, 1, 2, 2)
    with pytest.raises(DifflabError, match="discriminator norm"):
        PatchDiscriminator(norm="layer")


def test_the_default_critic_learns_to_tell_a_level_shift():
    """Real: piecewise-constant 8x8 images; fake: the same at 90% contrast (a close reconstruction's kind
    of error). 60 Adam steps take the default (BatchNorm) critic's hinge loss from ~1 to under 0.7."""
    g = torch.Generator().manual_seed(0)
    real = torch.nn.functional.interpolate(torch.rand(64, 3, 2, 2, generator=g).round() * 2 - 1, size=8)
    torch.manual_seed(0)
    d = PatchDiscriminator(3, channels=8, n_layers=1)
    opt = torch.optim.Adam(d.parameters(), 2e-3)
    history = []
    for _ in range(60):
        i = torch.randint(0, 64, (16,), generator=g)
        logits_real, logits_fake = d(torch.cat([real[i], 0.9 * real[i]])).chunk(2)
        loss = hinge_d_loss(logits_real, logits_fake).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert sum(history[:10]) / 10 > 0.9 and sum(history[-10:]) / 10 < 0.7
