"""Autoencoder losses: reconstruction, the adversarial terms, the adaptive GAN weight, a perceptual hook.

All per-sample (B,) unless noted; the objective reduces. Sources: seed 003 ("It's a VAE! Typically
with very small KL prior weight ... Add a discriminator!"); Esser et al. 2021 (VQ-GAN) §3.1 and eq. 7;
Rombach et al. 2022 App. G; taming-transformers' losses (the 1/2 in the discriminator losses).

    reconstruction  l1: mean_j |x_j - x_hat_j|        l2: mean_j (x_j - x_hat_j)^2
    hinge           L_D = 1/2 [relu(1 - D(x)) + relu(1 + D(x_hat))],       L_G = -D(x_hat)
    non-saturating  L_D = 1/2 [softplus(-D(x)) + softplus(D(x_hat))],      L_G = softplus(-D(x_hat))
                    (Goodfellow et al. 2014: -log sigmoid(D) = softplus(-D); seed 003's "train the
                    generator to minimize -log D(G(z))")
    adaptive weight lambda = ||grad_w L_rec|| / (||grad_w L_G|| + 1e-4), clamped to [0, 1e4], w the
                    decoder's last layer, detached (Esser et al. 2021, eq. 7)

The logits maps of a patch discriminator are averaged over their patches per sample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from difflab.utils.errors import check_choice

RECONSTRUCTIONS = ("l1", "l2")
GAN_LOSSES = ("hinge", "non_saturating")


def reconstruction_loss(x: Tensor, x_hat: Tensor, kind: str = "l1") -> Tensor:
    """Per-sample mean absolute (l1) or squared (l2) error (B,)."""
    check_choice("reconstruction loss", kind, RECONSTRUCTIONS)
    diff = (x_hat - x).flatten(1)
    return (diff.abs() if kind == "l1" else diff.square()).mean(1)


def _per_sample(logits: Tensor) -> Tensor:
    return logits.flatten(1).mean(1)  # (B,): the mean over the patches


def hinge_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """1/2 [mean relu(1 - D(x)) + mean relu(1 + D(x_hat))] per sample (B,)."""
    return 0.5 * (_per_sample(F.relu(1.0 - logits_real)) + _per_sample(F.relu(1.0 + logits_fake)))


def non_saturating_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """1/2 [mean softplus(-D(x)) + mean softplus(D(x_hat))] per sample (B,): the logistic GAN loss."""
    return 0.5 * (_per_sample(F.softplus(-logits_real)) + _per_sample(F.softplus(logits_fake)))


def discriminator_loss(logits_real: Tensor, logits_fake: Tensor, kind: str = "hinge") -> Tensor:
    """L_D per sample (B,) of the named kind: hinge_d_loss or non_saturating_d_loss (module docstring)."""
    check_choice("GAN loss", kind, GAN_LOSSES)
    fn = hinge_d_loss if kind == "hinge" else non_saturating_d_loss
    return fn(logits_real, logits_fake)


def generator_loss(logits_fake: Tensor, kind: str = "hinge") -> Tensor:
    """The decoder's adversarial loss (B,): -mean D(x_hat) (hinge) or mean softplus(-D(x_hat)) (non-saturating)."""
    check_choice("GAN loss", kind, GAN_LOSSES)
    return _per_sample(-logits_fake if kind == "hinge" else F.softplus(-logits_fake))


def adaptive_weight(rec_loss: Tensor, g_loss: Tensor, last_layer: Tensor, eps: float = 1e-4,
                    max_weight: float = 1e4) -> Tensor:
    """lambda = ||grad_w rec_loss|| / (||grad_w g_loss|| + eps), clamped to [0, max_weight], detached.

    rec_loss and g_loss are the scalar losses whose graphs reach `last_layer` (kept: retain_graph).
    """
    g_rec, = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)
    g_gan, = torch.autograd.grad(g_loss, last_layer, retain_graph=True)
    weight = torch.linalg.vector_norm(g_rec) / (torch.linalg.vector_norm(g_gan) + eps)
    return weight.clamp(0.0, max_weight).detach()


FeatureNet = Callable[[Tensor], Tensor | Sequence[Tensor]]


def perceptual_loss(features: FeatureNet, x: Tensor, x_hat: Tensor) -> Tensor:
    """sum_l mean_j (phi_l(x)_j - phi_l(x_hat)_j)^2 per sample (B,), phi = features(image): one feature
    map or a sequence of them (a user-supplied network, e.g. VGG layers with weights the user holds;
    difflab downloads nothing). Each map's channels are unit-normalized first (LPIPS, Zhang et al.
    2018, eq. 1 without its learned channel weights). The reference features carry no gradient."""
    with torch.no_grad():
        ref = features(x)
    out = features(x_hat)
    ref, out = ([ref], [out]) if isinstance(ref, Tensor) else (list(ref), list(out))
    total = torch.zeros(x.shape[0], device=x.device, dtype=torch.float32)
    for a, b in zip(ref, out, strict=True):
        a, b = F.normalize(a.float(), dim=1, eps=1e-10), F.normalize(b.float(), dim=1, eps=1e-10)
        total = total + (a - b).square().flatten(1).mean(1)
    return total
