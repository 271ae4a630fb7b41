"""The convolutional encoder and decoder trunks shared by the KL-VAE and the VQ-VAE.

The architecture of LDM's AutoencoderKL and taming-transformers' VQGAN (Rombach et al. 2022 App. G;
Esser et al. 2021 §3), written for difflab: a 3x3 conv in; per level l (width base_channels *
channel_mult[l]) num_res_blocks residual blocks

    h = x + conv2(SiLU(GN(conv1(SiLU(GN(x))))))      (1x1 conv on the skip when the width changes)

and a stride-2 conv between levels; a middle of ResBlock, optional self-attention, ResBlock; then
GroupNorm, SiLU and a 3x3 conv to the latent's channels. The decoder mirrors it with num_res_blocks + 1
blocks per level and nearest-neighbour x2 upsampling + conv, ending in GroupNorm, SiLU, a 3x3 conv to
the image channels (`conv_out`, the "last layer" of the adaptive GAN weight, Esser et al. eq. 7).
The downsampling factor is f = 2 ** (len(channel_mult) - 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from difflab.nets.unet import Downsample, SpatialAttention, Upsample, group_norm
from difflab.utils.errors import DifflabError

FACTORS = (1, 2, 4, 8)


def check_trunk_options(in_channels: int, base_channels: int, channel_mult: Sequence[int], num_res_blocks: int,
                        latent_channels: int) -> int:
    """Validate the trunk options (one message each); returns the downsampling factor f."""
    mult = tuple(channel_mult)
    if not 1 <= len(mult) <= len(FACTORS):
        raise DifflabError(
            f"channel_mult {list(mult)} gives {len(mult)} levels, a downsampling factor 2^{len(mult) - 1}; "
            f"give 1 to {len(FACTORS)} levels (factor f = 1, 2, 4 or 8), e.g. [1, 2, 2] for f = 4"
        )
    for name, value in (("in_channels", in_channels), ("base_channels", base_channels),
                        ("num_res_blocks", num_res_blocks), ("latent_channels", latent_channels)):
        if not (isinstance(value, int) and value >= 1):
            raise DifflabError(f"{name} must be a positive integer; got {value!r}")
    if not all(isinstance(m, int) and m >= 1 for m in mult):
        raise DifflabError(f"channel_mult entries must be positive integers; got {list(mult)}")
    return 2 ** (len(mult) - 1)


class ResBlock(nn.Module):
    """out = skip(x) + conv2(SiLU(GN(conv1(SiLU(GN(x)))))): ADM's block without a time embedding."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, H, W)
        h = self.conv2(F.silu(self.norm2(h)))  # (B, C_out, H, W)
        return self.skip(x) + h  # (B, C_out, H, W)


def _middle(channels: int, attention: bool) -> nn.Sequential:
    """ResBlock, [x + SelfAttn(GN(x)) over the h*w positions], ResBlock."""
    attn = [SpatialAttention(channels, num_heads=1)] if attention else []
    return nn.Sequential(ResBlock(channels, channels), *attn, ResBlock(channels, channels))


def _head(in_channels: int, out_channels: int) -> nn.Sequential:
    """GroupNorm, SiLU, 3x3 conv."""
    return nn.Sequential(group_norm(in_channels), nn.SiLU(), nn.Conv2d(in_channels, out_channels, 3, padding=1))


class Encoder(nn.Module):
    """(B, in_channels, H, W) -> (B, out_channels, H/f, W/f)."""

    def __init__(self, in_channels: int, base_channels: int, channel_mult: Sequence[int], num_res_blocks: int,
                 out_channels: int, attention: bool):
        super().__init__()
        widths = [base_channels * m for m in channel_mult]
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        blocks, ch = [], base_channels
        for level, width in enumerate(widths):
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(ch, width))
                ch = width
            if level < len(widths) - 1:
                blocks.append(Downsample(ch))
        self.down = nn.Sequential(*blocks)
        self.mid = _middle(ch, attention)
        self.out = _head(ch, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.mid(self.down(self.conv_in(x))))  # (B, out_channels, H/f, W/f)


class Decoder(nn.Module):
    """(B, in_channels, h, w) -> (B, out_channels, h*f, w*f); `conv_out` is its last layer."""

    def __init__(self, in_channels: int, base_channels: int, channel_mult: Sequence[int], num_res_blocks: int,
                 out_channels: int, attention: bool):
        super().__init__()
        widths = [base_channels * m for m in channel_mult]
        ch = widths[-1]
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.mid = _middle(ch, attention)
        blocks = []
        for level in reversed(range(len(widths))):
            for _ in range(num_res_blocks + 1):
                blocks.append(ResBlock(ch, widths[level]))
                ch = widths[level]
            if level > 0:
                blocks.append(Upsample(ch))
        self.up = nn.Sequential(*blocks)
        self.norm_out = group_norm(ch)
        self.conv_out = nn.Conv2d(ch, out_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.up(self.mid(self.conv_in(z)))  # (B, base_channels * channel_mult[0], h*f, w*f)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, out_channels, h*f, w*f)
