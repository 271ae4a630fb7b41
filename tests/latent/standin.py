"""A stand-in autoencoder with a closed form: z = average pool of x over f x f blocks, x_hat = nearest upsample."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from difflab.autoencoders.base import Autoencoder


class PoolAutoencoder(Autoencoder):
    """encode(x) = avgpool_f(x) (C latent channels), decode(z) = nearest upsample by f; `calls` counts the
    images encoded (one parameter, so it has a device)."""

    def __init__(self, factor: int = 4, channels: int = 3, scale: float = 2.0, fingerprint: str = "pool-v1"):
        super().__init__(factor, channels)
        self.set_latent_scale(scale)
        self.fingerprint = fingerprint
        self.weight = nn.Parameter(torch.ones(()), requires_grad=False)
        self.calls = 0

    def encode(self, x: Tensor) -> Tensor:
        self.calls += len(x)
        return F.avg_pool2d(x, self.factor) * self.weight

    def decode(self, z: Tensor) -> Tensor:
        return F.interpolate(z, scale_factor=self.factor, mode="nearest")
