"""The autoencoder contract of latent diffusion (seed 000 "latent diffusion", seed 002, seed 004).

Latent diffusion (Rombach et al. 2022) trains the denoiser on z = s * E(x) and samples
x = D(z / s), where E, D are a pretrained autoencoder's encoder and decoder and s is the latent
scale: 1 / std of the training latents, so that the diffusion process sees latents of unit variance
(Stable Diffusion's s = 0.18215, measured once on its training data). Every autoencoder in difflab
(KL-VAE, VQ-VAE, a diffusers AutoencoderKL) is an `Autoencoder`:

    encode(x)      image in [-1, 1] (B, C, H, W) -> unscaled latent (B, c, H/f, W/f)
                   (KL: the posterior mean; VQ: the quantized code vectors)
    decode(z)      unscaled latent -> image (B, C, H, W)
    to_latent(x)   = encode(x) * latent_scale     } the ONE place where the scale is applied
    from_latent(z) = decode(z / latent_scale)     }

`latent_scale` is a registered buffer, so it travels with the safetensors weights; it is 1.0 until
`measure_latent_scale` has measured it on the training data and `set_latent_scale` has stored it.
`fingerprint` is set by the loader and identifies the weights (latent caches key on it).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from difflab.utils.errors import DifflabError


class Autoencoder(nn.Module):
    """Base class: subclasses set `factor` and `latent_channels` and implement encode/decode."""

    factor: int  # spatial downsampling f: the latent of an (H, W) image is (H/f, W/f)
    latent_channels: int  # c

    def __init__(self, factor: int, latent_channels: int):
        super().__init__()
        self.factor, self.latent_channels = int(factor), int(latent_channels)
        self.fingerprint = ""  # set by the loader: identifies the weights
        self.register_buffer("_latent_scale", torch.ones((), dtype=torch.float64))

    # ----- the latent scale ---------------------------------------------------------------------
    @property
    def latent_scale(self) -> float:
        """s = 1 / std of the training latents (1.0 until measured)."""
        return float(self._latent_scale)

    def set_latent_scale(self, scale: float) -> None:
        """Store s (a positive finite float) in the buffer that is saved with the weights."""
        scale = float(scale)
        if not (scale > 0 and scale < float("inf")):
            raise DifflabError(f"latent scale must be a positive finite number; got {scale!r}")
        self._latent_scale.fill_(scale)

    # ----- the contract -------------------------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        """Image in [-1, 1] (B, C, H, W) -> unscaled latent (B, c, H/f, W/f)."""
        raise NotImplementedError

    def decode(self, z: Tensor) -> Tensor:
        """Unscaled latent (B, c, h, w) -> image (B, C, h*f, w*f)."""
        raise NotImplementedError

    def check_image_size(self, x: Tensor) -> None:
        """One message when H or W is not divisible by f."""
        h, w = x.shape[-2:]
        if h % self.factor or w % self.factor:
            raise DifflabError(
                f"images of size {h}x{w} cannot be encoded by an autoencoder with downsampling factor "
                f"{self.factor}; resize or crop them to a multiple of {self.factor}"
            )

    def to_latent(self, x: Tensor) -> Tensor:
        """z = s * encode(x): the latent the diffusion model is trained on."""
        return self.encode(x) * self.latent_scale

    def from_latent(self, z: Tensor) -> Tensor:
        """x = decode(z / s): the image of a diffusion model's latent."""
        return self.decode(z / self.latent_scale)


@torch.no_grad()
def measure_latent_scale(autoencoder: Autoencoder, batches: Iterable[Tensor]) -> float:
    """s = 1 / std of the unscaled latents encode(x) over all elements of all batches.

    The standard deviation is taken over every latent element (batch, channel and space pooled, as
    Rombach et al. measure 0.18215), accumulated in float64 as sum and sum of squares of the
    per-batch centred values (Chan et al.'s parallel variance: exact merging, no catastrophic
    cancellation); population std (divisor N).
    """
    n, mean, m2 = 0, 0.0, 0.0
    for x in batches:
        z = autoencoder.encode(x).detach().to(torch.float64).flatten()
        nb = z.numel()
        if nb == 0:
            continue
        mb = float(z.mean())
        m2b = float(((z - mb) ** 2).sum())
        delta = mb - mean
        total = n + nb
        mean += delta * nb / total
        m2 += m2b + delta * delta * n * nb / total
        n = total
    if n == 0:
        raise DifflabError("cannot measure the latent scale of no data; give at least one batch of images")
    std = (m2 / n) ** 0.5
    if not std > 0:
        raise DifflabError("the latents have zero variance, so the latent scale 1/std is undefined; "
                           "train the autoencoder before measuring its latent scale")
    return 1.0 / std
