"""PatchGAN discriminator (Isola et al. 2017 §3.2; taming-transformers' NLayerDiscriminator in spirit).

A fully convolutional critic whose every output logit judges one overlapping patch of the input
(seed 003: "Add a discriminator!" to the latent VAE for crisp reconstructions; VQ-GAN, Esser et al.
2021 §3.1). Layers: 4x4 conv stride 2 to `channels`, LeakyReLU(0.2); n_layers - 1 more 4x4 stride-2
convs doubling the width (capped at 8x), each with a norm and LeakyReLU(0.2); one 4x4 stride-1 conv
with norm and LeakyReLU; a 4x4 stride-1 conv to 1 channel: the logits map (B, 1, h, w). Weights are
initialised N(0, 0.02), norm scales N(1, 0.02) (DCGAN, Radford et al. 2016, as taming does).

norm: "batch" (BatchNorm, taming's choice and the default), "group" (GroupNorm) or "none". The
objective passes real and reconstructed images through in one batch, so BatchNorm's statistics span
both; normalizing each image on its own (GroupNorm) removes the per-image levels that tell a close
reconstruction from its input: on shapes reconstructions at 29.6 dB a 2-layer critic's hinge loss fell
from 1.0 to 0.46 in 150 Adam steps with BatchNorm, and stayed at 1.0 with GroupNorm (0.98 without norm).
"""

from __future__ import annotations

from torch import Tensor, nn

from difflab.nets.unet import group_norm
from difflab.utils.errors import DifflabError, check_choice

NORMS = ("batch", "group", "none")


def _norm(kind: str, channels: int) -> nn.Module:
    return {"group": lambda: group_norm(channels), "batch": lambda: nn.BatchNorm2d(channels),
            "none": nn.Identity}[kind]()


def patch_output_size(size: int, n_layers: int) -> int:
    """Logit-map side for an input side `size`: n_layers halvings (k4 s2 p1), then two k4 s1 p1 convs (-1 each)."""
    for _ in range(n_layers):
        size = size // 2
    return size - 2


class PatchDiscriminator(nn.Module):
    """forward(x (B, C, H, W)) -> logits (B, 1, h, w); h = H / 2^n_layers - 2."""

    def __init__(self, in_channels: int = 3, channels: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        check_choice("discriminator norm", norm, NORMS)
        if not (isinstance(n_layers, int) and n_layers >= 1):
            raise DifflabError(f"the discriminator's n_layers must be an integer >= 1 (taming uses 3); got {n_layers!r}")
        self.n_layers = n_layers
        act = lambda: nn.LeakyReLU(0.2)  # noqa: E731
        layers = [nn.Conv2d(in_channels, channels, 4, stride=2, padding=1), act()]
        width = channels
        for n in range(1, n_layers + 1):
            out = channels * min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(width, out, 4, stride=stride, padding=1, bias=norm == "none"), _norm(norm, out), act()]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)
        self._init_weights()

    def _init_weights(self) -> None:
        """Convs N(0, 0.02); norm scales N(1, 0.02), shifts 0 (DCGAN)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.GroupNorm, nn.BatchNorm2d)):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if min(patch_output_size(h, self.n_layers), patch_output_size(w, self.n_layers)) < 1:
            smallest = 3 * 2**self.n_layers
            raise DifflabError(
                f"a {self.n_layers}-layer patch discriminator needs images of at least {smallest}x{smallest}; "
                f"got {h}x{w}: lower the discriminator's n_layers"
            )
        return self.net(x)  # (B, 1, H / 2^n_layers - 2, W / 2^n_layers - 2)
