"""KL-VAE: a convolutional autoencoder with a diagonal Gaussian posterior (seed 003 "latent VAE").

Kingma & Welling 2014; the KL-regularized first stage of latent diffusion (Rombach et al. 2022 §3,
"KL-reg.": a slight KL penalty towards a standard normal on the learned latent, beta ~ 1e-6). The
encoder maps x to the 2c channels of (mean, log variance) of q(z | x) = N(mu, diag(sigma^2)), the log
variance clamped to [-30, 20] as in LDM's DiagonalGaussianDistribution; training decodes a
reparameterized sample z = mu + sigma * eps, eps ~ N(0, I) (Kingma & Welling §2.4); encode() gives the
posterior mean, the latent diffusion trains on.

    KL(q(z | x) || N(0, I)) = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)   (Kingma & Welling App. B)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from difflab.autoencoders.base import Autoencoder
from difflab.autoencoders.trunk import Decoder, Encoder, check_trunk_options

LOGVAR_RANGE = (-30.0, 20.0)


class DiagonalGaussian:
    """N(mean, diag(exp(logvar))) over the latent (B, c, h, w); logvar clamped to [-30, 20]."""

    def __init__(self, mean: Tensor, logvar: Tensor):
        self.mean = mean
        self.logvar = logvar.clamp(*LOGVAR_RANGE)
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """z = mean + std * eps, eps ~ N(0, I) from `generator` (reparameterization: differentiable)."""
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self) -> Tensor:
        return self.mean

    def kl(self) -> Tensor:
        """KL(q || N(0, I)) per sample (B,): 1/2 sum over the latent dims of mu^2 + sigma^2 - 1 - log sigma^2."""
        terms = self.mean.square() + self.var - 1.0 - self.logvar  # (B, c, h, w)
        return 0.5 * terms.flatten(1).sum(1)


class KLAutoencoder(Autoencoder):
    """encode(x) = posterior mean; decode(z) = the decoder; posterior(x) = q(z | x).

    Options: in_channels (image channels), base_channels, channel_mult (len - 1 = log2 f: f = 1, 2, 4, 8),
    num_res_blocks, latent_channels c, attention (self-attention in the middle blocks).
    """

    def __init__(self, in_channels: int = 3, base_channels: int = 64, channel_mult: Sequence[int] = (1, 2, 2),
                 num_res_blocks: int = 1, latent_channels: int = 4, attention: bool = False):
        factor = check_trunk_options(in_channels, base_channels, channel_mult, num_res_blocks, latent_channels)
        super().__init__(factor, latent_channels)
        self.in_channels = in_channels
        trunk = dict(base_channels=base_channels, channel_mult=tuple(channel_mult), num_res_blocks=num_res_blocks,
                     attention=bool(attention))
        self.encoder = Encoder(in_channels, out_channels=2 * latent_channels, **trunk)
        self.decoder = Decoder(latent_channels, out_channels=in_channels, **trunk)

    def posterior(self, x: Tensor) -> DiagonalGaussian:
        """q(z | x) for images x in [-1, 1] (B, C, H, W)."""
        self.check_image_size(x)
        mean, logvar = self.encoder(x).chunk(2, dim=1)  # 2 x (B, c, H/f, W/f)
        return DiagonalGaussian(mean, logvar)

    def encode(self, x: Tensor) -> Tensor:
        return self.posterior(x).mean

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    @property
    def last_layer(self) -> Tensor:
        """The decoder's last weight: where the adaptive GAN weight compares gradients."""
        return self.decoder.conv_out.weight

    def reconstruct(self, x: Tensor, generator: torch.Generator | None = None, sample: bool = True
                    ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """(x_hat, per-sample regularizers {"kl": (B,)}, batch stats {}): decode a posterior sample
        (or the mean when sample=False)."""
        q = self.posterior(x)
        z = q.sample(generator) if sample else q.mode()
        return self.decode(z), {"kl": q.kl()}, {}

    forward = reconstruct  # the trainer calls the (DDP-wrapped) module
