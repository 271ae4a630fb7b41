"""DC-GAN (Radford et al. 2016) with seed 003's non-saturating losses and an optional R1 penalty.

The game (Goodfellow et al. 2014; seed 003), D(x) a logit and sigma the logistic function:

    discriminator: L_D = -log sigma(D(x)) - log(1 - sigma(D(G(z)))) = softplus(-D(x)) + softplus(D(G(z)))
                         + gamma/2 ||grad_x D(x)||^2 on real x (R1, Mescheder et al. 2018, eq. 9),
    generator:     L_G = -log sigma(D(G(z)))  = softplus(-D(G(z)))   (the non-saturating loss: strong
                         gradients while D(G(z)) is near 0, where log(1 - sigma) saturates),

z ~ N(0, I). Architectures (DC-GAN's guidelines): the generator projects z, then transposed convolutions
with stride 2, BatchNorm and ReLU, a tanh output in the data range [-1, 1]; the discriminator strided
convolutions with LeakyReLU(0.2). The discriminator has no BatchNorm: R1 needs each image's gradient
of its own logit, which batch statistics would couple. For vector data (D,) (the 2-D toy sets) both are
MLPs, the generator's output linear (no tanh: toy data are not bounded to [-1, 1]).

`DCGAN` is the generator, the model the trainer keeps (EMA, checkpoints); it carries the game's
settings (d_width, r1_gamma, n_critic, d_lr_ratio) that difflab.baselines.gan_objective reads to build
the discriminator and its optimizer. A GAN has no likelihood (has_likelihood False).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from difflab.baselines.base import Baseline, check_shape
from difflab.utils.errors import DifflabError


def r1_penalty(d_real: Tensor, real: Tensor) -> Tensor:
    """(B,) ||grad_x D(x)||^2 per image from the logits d_real = D(real) (real.requires_grad; the graph
    is kept, so the penalty trains D). Per image because D couples no images (no BatchNorm)."""
    (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
    return grad.flatten(1).square().sum(1)


def discriminator_loss(d_real: Tensor, d_fake: Tensor) -> Tensor:
    """(B,) -log sigma(D(x)) - log(1 - sigma(D(G(z)))) from the logits."""
    return F.softplus(-d_real) + F.softplus(d_fake)


def generator_loss(d_fake: Tensor) -> Tensor:
    """(B,) the non-saturating -log sigma(D(G(z)))."""
    return F.softplus(-d_fake)


def _conv_widths(width: int, upsample: int) -> list[int]:
    """Channels from the lowest resolution up: width * 2^upsample, ..., width * 2, width."""
    return [width * 2 ** (upsample - i) for i in range(upsample + 1)]


class Discriminator(nn.Module):
    """D(x) -> (B,) logits: strided 4x4 convolutions with LeakyReLU(0.2) (an MLP for vectors)."""

    def __init__(self, data_shape: tuple[int, ...], width: int, upsample: int):
        super().__init__()
        if len(data_shape) == 1:
            self.net = nn.Sequential(nn.Linear(data_shape[0], width), nn.LeakyReLU(0.2), nn.Linear(width, width),
                                     nn.LeakyReLU(0.2), nn.Linear(width, 1))
            return
        C, H, W = data_shape
        widths = _conv_widths(width, upsample)[::-1]  # width, 2 width, ... at falling resolution
        layers: list[nn.Module] = [nn.Conv2d(C, widths[0], 3, padding=1), nn.LeakyReLU(0.2)]
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Conv2d(a, b, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        f = 2**upsample
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(widths[-1] * (H // f) * (W // f), 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(1)


class DCGAN(Baseline):
    """The generator G(z) over data_shape (C, H, W) or (D,); levels are not used (a GAN has no likelihood).

    latent_dim: size of z; width: the generator's output-stage channels (doubled at each of `upsample`
    stride-2 stages below it; H and W must divide by 2^upsample) or an MLP's hidden size; d_width the
    discriminator's. r1_gamma: R1 weight gamma (0: off, the plain DC-GAN; on 8 x 8 digits that run
    collapsed to one digit within 500 steps, gamma = 1 kept the digits varied); n_critic: discriminator
    updates per generator update; d_lr_ratio: the discriminator's learning rate over the generator's.
    """

    family, has_likelihood, nfe_per_sample = "gan", False, 1

    def __init__(self, data_shape, levels: int | None = None, latent_dim: int = 32, width: int = 32,
                 upsample: int = 2, d_width: int = 32, r1_gamma: float = 1.0, n_critic: int = 1,
                 d_lr_ratio: float = 1.0):
        super().__init__()
        self.data_shape = check_shape(data_shape, (1, 3), "gan")
        self.levels, self.latent_dim = levels, latent_dim
        if min(latent_dim, width, d_width, n_critic) < 1 or r1_gamma < 0 or d_lr_ratio <= 0 or upsample < 0:
            raise DifflabError(f"GAN options: latent_dim, width, d_width and n_critic must be >= 1, upsample >= 0, "
                               f"r1_gamma >= 0 and d_lr_ratio > 0; got latent_dim={latent_dim}, width={width}, "
                               f"d_width={d_width}, n_critic={n_critic}, upsample={upsample}, r1_gamma={r1_gamma}, "
                               f"d_lr_ratio={d_lr_ratio}")
        self.d_width, self.upsample, self.r1_gamma = d_width, upsample, float(r1_gamma)
        self.n_critic, self.d_lr_ratio = n_critic, float(d_lr_ratio)
        if len(self.data_shape) == 1:
            self.net = nn.Sequential(
                nn.Linear(latent_dim, width), nn.BatchNorm1d(width), nn.ReLU(),
                nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, self.data_shape[0]))
            return
        C, H, W = self.data_shape
        f = 2**upsample
        if H % f or W % f:
            raise DifflabError(f"GAN option upsample={upsample}: H and W ({H}, {W}) must divide by 2^upsample = {f}")
        widths = _conv_widths(width, upsample)
        bottom = (widths[0], H // f, W // f)
        layers: list[nn.Module] = [nn.Linear(latent_dim, math.prod(bottom)), nn.Unflatten(1, bottom),
                                   nn.BatchNorm2d(widths[0]), nn.ReLU()]
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1), nn.BatchNorm2d(b), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Conv2d(widths[-1], C, 3, padding=1), nn.Tanh())

    def make_discriminator(self) -> Discriminator:
        """A fresh discriminator for this generator's data and settings (the objective owns it)."""
        return Discriminator(self.data_shape, self.d_width, self.upsample)

    def draw_latent(self, n: int, generator: torch.Generator, device=None) -> Tensor:
        """z ~ N(0, I), (n, latent_dim), from `generator`."""
        return torch.randn(n, self.latent_dim, generator=generator, device=device if device is not None else self.device)

    def forward(self, z: Tensor) -> Tensor:
        """G(z): (B, latent_dim) -> (B, *data_shape)."""
        return self.net(z)

    @torch.no_grad()
    def draw(self, n: int, draws, device, labels: Tensor | None) -> Tensor:
        """n images G(z), z ~ N(0, I) from `draws`; BatchNorm in eval mode (its running statistics), the
        module's mode restored afterwards."""
        if labels is not None:
            raise DifflabError("this GAN is unconditional: pass no labels")
        was_training = self.training
        self.eval()
        try:
            return self(draws.normal((self.latent_dim,)))
        finally:
            self.train(was_training)

    def log_likelihood(self, x: Tensor, *, generator: torch.Generator | None = None, k: int | None = None,
                       labels: Tensor | None = None) -> Tensor:
        raise DifflabError("a GAN defines no likelihood (it is an implicit model: samples only); report its sample "
                           "metrics (fdd, precision, recall) instead of nll")
