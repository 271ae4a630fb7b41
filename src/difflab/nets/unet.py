"""UNet: the ADM / DDPM convolutional denoiser (Ho et al. 2020 App. B; Dhariwal & Nichol 2021 §3).

Residual blocks (GroupNorm, SiLU, 3x3 convs) read the time(+class) embedding as a per-channel scale and
shift of their second GroupNorm (AdaGN); an encoder halves the resolution level by level, a decoder
doubles it back and concatenates the encoder's feature maps (skip connections, seed 000 "U-Net for
Diffusion": they "preserve high-frequency details lost in downsampling"); self-attention runs at
chosen resolutions and in the middle, and with context_dim each attention layer is followed by
cross-attention to the text tokens (Rombach et al. 2022; seed 004 "Denoising UNet ... cross-attention
with prompt embedding"). Zero-initialized residual branches and output make the untrained network the
identity on its skip paths and predict 0.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from difflab.nets.attention import CrossAttention, SelfAttention, check_heads
from difflab.nets.embeddings import ConditionEmbedding
from difflab.utils.cond import Cond
from difflab.utils.errors import DifflabError

#################################################################################
#                                 Building blocks                               #
#################################################################################


def group_norm(channels: int, max_groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with gcd(channels, 32) groups: ADM's 32 groups wherever the width allows it."""
    return nn.GroupNorm(math.gcd(channels, max_groups), channels)


class ResBlock(nn.Module):
    """out = skip(x) + conv2(Dropout(SiLU(GN(h) (1 + s) + b))), h = conv1(SiLU(GN(x))), (s, b) = Linear(SiLU(emb)).

    The scale/shift injection of the embedding is ADM's AdaGN (Dhariwal & Nichol 2021 §3,
    "use_scale_shift_norm"); skip is a 1x1 conv when the width changes.
    """

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_channels)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, H, W)
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)  # 2 x (B, C_out, 1, 1)
        h = self.norm2(h) * (1 + scale) + shift  # (B, C_out, H, W)
        h = self.conv2(self.dropout(F.silu(h)))  # (B, C_out, H, W)
        return self.skip(x) + h  # (B, C_out, H, W)


class SpatialAttention(nn.Module):
    """Attention over the H*W positions: x + SelfAttn(GN(x)), then x + CrossAttn(LN(x), context) if text-conditioned."""

    def __init__(self, channels: int, num_heads: int, context_width: int | None = None):
        super().__init__()
        self.norm = group_norm(channels)
        self.attn = SelfAttention(channels, num_heads)
        self.cross_norm = nn.LayerNorm(channels) if context_width is not None else None
        self.cross = CrossAttention(channels, context_width, num_heads) if context_width is not None else None

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        B, C, H, W = x.shape
        tokens = x.flatten(2)  # (B, C, HW)
        tokens = tokens.transpose(1, 2) + self.attn(self.norm(tokens).transpose(1, 2))  # (B, HW, C)
        if self.cross is not None:
            tokens = tokens + self.cross(self.cross_norm(tokens), context, mask)  # (B, HW, C)
        return tokens.transpose(1, 2).reshape(B, C, H, W)  # (B, C, H, W)


class UNetBlock(nn.Module):
    """A ResBlock, followed by SpatialAttention at the attention resolutions."""

    def __init__(self, in_channels, out_channels, emb_dim, dropout, num_heads, attention, context_width):
        super().__init__()
        self.res = ResBlock(in_channels, out_channels, emb_dim, dropout)
        self.attn = SpatialAttention(out_channels, num_heads, context_width) if attention else None

    def forward(self, x: Tensor, emb: Tensor, context: Tensor | None, mask: Tensor | None) -> Tensor:
        h = self.res(x, emb)  # (B, C_out, H, W)
        return h if self.attn is None else self.attn(h, context, mask)  # (B, C_out, H, W)


class Downsample(nn.Module):
    """3x3 convolution with stride 2: (B, C, H, W) -> (B, C, H/2, W/2)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 convolution: (B, C, H, W) -> (B, C, 2H, 2W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


#################################################################################
#                                     UNet                                      #
#################################################################################


def zero_init_residual_branches(module: nn.Module) -> None:
    """Zero-init the last layer of every residual branch (ADM's zero_module): each ResBlock and attention
    layer of `module` starts as the identity, so depth does not blow up the activations."""
    for m in module.modules():
        if isinstance(m, ResBlock):
            nn.init.zeros_(m.conv2.weight)
            nn.init.zeros_(m.conv2.bias)
        if isinstance(m, (SelfAttention, CrossAttention)):
            nn.init.zeros_(m.proj.weight)
            nn.init.zeros_(m.proj.bias)


def encoder(block, in_channels: int, base_channels: int, widths: list[int], num_res_blocks: int,
            attention_levels: set[int],
            mid_attention: bool = True) -> tuple[nn.Conv2d, nn.ModuleList, nn.ModuleList, list[int]]:
    """ADM's encoder half and middle, shared by UNet and NoisyClassifier: (in_conv, down_blocks, mid_blocks,
    the width after in_conv and after every down block, the skips' widths; the last is the middle's width).

    Level l has num_res_blocks blocks of width widths[l] (attention at attention_levels) and, except the
    last, a stride-2 Downsample; the middle is ResBlock, attention, ResBlock (ADM's), or two ResBlocks with
    mid_attention=False: with no attention_resolutions either, no layer attends over positions (the GroupNorm
    statistics still span the whole feature map)."""
    in_conv = nn.Conv2d(in_channels, base_channels, 3, padding=1)
    widths_out, ch, down_blocks = [base_channels], base_channels, nn.ModuleList()
    for level, width in enumerate(widths):
        for _ in range(num_res_blocks):
            down_blocks.append(block(ch, width, attention=level in attention_levels))
            ch = width
            widths_out.append(ch)
        if level < len(widths) - 1:
            down_blocks.append(Downsample(ch))
            widths_out.append(ch)
    mid_blocks = nn.ModuleList([block(ch, ch, attention=mid_attention), block(ch, ch, attention=False)])
    return in_conv, down_blocks, mid_blocks, widths_out


class UNet(nn.Module):
    """forward(x (B, C, H, W), c_noise (B,), cond) -> (B, C, H, W).

    Level l (0 = full resolution) has width base_channels * channel_mult[l] and num_res_blocks blocks
    in the encoder (num_res_blocks + 1 in the decoder, one per skip). attention_resolutions are
    feature-map sizes for an image_size input, turned into levels (image_size / r = 2^l), so the same
    network runs on any H, W divisible by 2^(levels - 1), with attention at the same levels; the middle
    has self-attention unless mid_attention=False (a network without any attention needs both).
    num_classes adds a class embedding (with a learned null class) to the time embedding; context_dim
    adds cross-attention to text tokens of that width after every attention layer; interval_embedding adds
    the embedding of a second time, cond["interval"] (difflab.nets.embeddings.ConditionEmbedding).
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int | None = None,
        base_channels: int = 64,
        channel_mult: tuple[int, ...] = (1, 2, 2),
        num_res_blocks: int = 2,
        attention_resolutions: tuple[int, ...] = (16,),
        image_size: int = 32,
        num_heads: int = 4,
        dropout: float = 0.0,
        num_classes: int | None = None,
        context_dim: int | None = None,
        num_null_tokens: int = 1,
        interval_embedding: bool = False,
        mid_attention: bool = True,
    ):
        super().__init__()
        if len(channel_mult) < 1 or num_res_blocks < 1:
            raise DifflabError(
                f"UNet needs at least one level and one block per level; got channel_mult={channel_mult}, "
                f"num_res_blocks={num_res_blocks}"
            )
        self.in_channels, self.num_levels = in_channels, len(channel_mult)
        out_channels = out_channels or in_channels
        widths = [base_channels * m for m in channel_mult]
        for w in widths:
            check_heads(w, num_heads)
        attention_levels = attention_levels_from_resolutions(attention_resolutions, image_size, len(widths))
        emb_dim = 4 * base_channels
        ctx = emb_dim if context_dim is not None else None
        block = partial(UNetBlock, emb_dim=emb_dim, dropout=dropout, num_heads=num_heads, context_width=ctx)
        self.cond_embed = ConditionEmbedding(
            emb_dim, num_classes, context_dim, emb_dim, num_null_tokens, frequency_dim=base_channels, owner="UNet",
            interval=interval_embedding,
        )

        # Encoder and middle: every block and every downsampling leaves a skip for the decoder.
        self.in_conv, self.down_blocks, self.mid_blocks, skip_widths = encoder(
            block, in_channels, base_channels, widths, num_res_blocks, attention_levels, mid_attention
        )
        ch = skip_widths[-1]

        # Decoder: one block per skip, upsampling between levels.
        self.up_blocks = nn.ModuleList()
        for level in reversed(range(len(widths))):
            for _ in range(num_res_blocks + 1):
                self.up_blocks.append(block(ch + skip_widths.pop(), widths[level], attention=level in attention_levels))
                ch = widths[level]
            if level > 0:
                self.up_blocks.append(Upsample(ch))

        self.out_norm = group_norm(ch)
        self.out_conv = nn.Conv2d(ch, out_channels, 3, padding=1)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        # Convolutions and linear layers keep PyTorch's default init (as ADM); embeddings start small.
        self.cond_embed.initialize_weights()
        zero_init_residual_branches(self)
        # Zero-init the output conv: the untrained network predicts 0.
        nn.init.zeros_(self.out_conv.weight)
        nn.init.zeros_(self.out_conv.bias)

    def forward(self, x: Tensor, c_noise: Tensor, cond: Cond | None = None) -> Tensor:
        factor = 2 ** (self.num_levels - 1)
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[2] % factor or x.shape[3] % factor:
            raise DifflabError(
                f"UNet(in_channels={self.in_channels}, {self.num_levels} levels) takes x of shape "
                f"(B, {self.in_channels}, H, W) with H and W divisible by {factor}; got {tuple(x.shape)}: "
                "resize or pad the images, or use fewer channel_mult levels"
            )
        emb, context, mask = self.cond_embed(c_noise, cond, x.shape[0])  # (B, E), (B, K+L, E), (B, K+L)
        h = self.in_conv(x)  # (B, C_0, H, W)
        skips = [h]
        for blk in self.down_blocks:
            h = blk(h) if isinstance(blk, Downsample) else blk(h, emb, context, mask)  # (B, C_l, H_l, W_l)
            skips.append(h)
        for blk in self.mid_blocks:
            h = blk(h, emb, context, mask)  # (B, C_last, H_last, W_last)
        for blk in self.up_blocks:
            if isinstance(blk, Upsample):
                h = blk(h)  # (B, C_l, 2 H_l, 2 W_l)
            else:
                h = blk(torch.cat([h, skips.pop()], dim=1), emb, context, mask)  # (B, C_l, H_l, W_l)
        return self.out_conv(F.silu(self.out_norm(h)))  # (B, C, H, W)


def attention_levels_from_resolutions(resolutions: tuple[int, ...], image_size: int, num_levels: int) -> set[int]:
    """Levels l with image_size / 2^l in `resolutions` (ADM's attention_ds); each must name a level."""
    levels = set()
    for r in resolutions:
        ds = image_size // r if r > 0 and image_size % r == 0 else 0
        if ds < 1 or ds & (ds - 1) or ds.bit_length() > num_levels:
            valid = [image_size // 2**level for level in range(num_levels)]
            raise DifflabError(
                f"attention resolution {r} is not a feature-map size of this UNet for image_size={image_size}; "
                f"valid resolutions are: {valid}"
            )
        levels.add(ds.bit_length() - 1)
    return levels


#################################################################################
#                                  UNet sizes                                   #
#################################################################################

# UNet-T: a tiny network for tests and CPU demos. UNet-10M: about 10M parameters at 32x32x3 (DDPM's
# CIFAR-10 layout at half DDPM's width), the network of the throughput benchmark.
UNet_models = {
    "UNet-T": partial(UNet, base_channels=16, channel_mult=(1, 2), num_res_blocks=1, num_heads=2),
    "UNet-10M": partial(
        UNet, base_channels=64, channel_mult=(1, 2, 2, 2), num_res_blocks=2, attention_resolutions=(16,)
    ),
}
