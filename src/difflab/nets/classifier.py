"""NoisyClassifier: the noise-aware classifier p_phi(y | x_t) of classifier guidance.

Classifier guidance (Dhariwal & Nichol 2021 §4, Algorithm 1; seeds 001 and 002 "Classifier Guidance")
samples with grad_x log p(x_t | y) = grad_x log p(x_t) + s grad_x log p_phi(y | x_t). A classifier trained
on clean images is useless there (seed 002: "Problem: classifier isn't trained on noisy images!"), so
this one sees x_t together with its noise level, exactly as the denoiser does.

The architecture is ADM's EncoderUNetModel: the encoder half of the U-Net (ResBlocks with the AdaGN
time embedding, self-attention at chosen resolutions, stride-2 downsampling), the U-Net's middle
(ResBlock, attention, ResBlock), then GroupNorm, SiLU, a pooling to one vector per image and a linear
head to num_classes logits. pool="mean" is global average pooling (ADM's "adaptive"); pool="attention"
is ADM's AttentionPool2d: one query, the mean feature plus a learned positional embedding, attends over
all H W positions (+ itself), so the head can use where a feature sits.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from difflab.nets.attention import attend, check_heads
from difflab.nets.embeddings import ConditionEmbedding
from difflab.nets.unet import (
    Downsample,
    UNetBlock,
    attention_levels_from_resolutions,
    encoder,
    group_norm,
    zero_init_residual_branches,
)
from difflab.utils.cond import Cond
from difflab.utils.errors import DifflabError, check_choice

POOLINGS = ("mean", "attention")

#################################################################################
#                                Attention pooling                              #
#################################################################################


class AttentionPool(nn.Module):
    """(B, C, H, W) -> (B, C): the output at the mean token of attention over [mean, h_1, ..., h_HW] + pos.

    tokens z_0 = mean_j h_j, z_j = h_j (j = 1..N); z_j <- z_j + p_j (learned, N + 1 rows);
    out = sum_j softmax_j(q . k_j / sqrt(d)) v_j per head, with q = W_q z_0, k_j = W_k z_j, v_j = W_v z_j.
    ADM's AttentionPool2d (Dhariwal & Nichol 2021, App. A classifier) with its output projection left to
    the classifier's head. Only the mean token's query is computed: the other outputs are never used.
    """

    def __init__(self, channels: int, num_positions: int, num_heads: int):
        super().__init__()
        check_heads(channels, num_heads)
        self.num_heads, self.num_positions = num_heads, num_positions
        self.pos = nn.Parameter(torch.randn(num_positions + 1, channels) / channels**0.5)
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(channels, 2 * channels)

    def forward(self, h: Tensor) -> Tensor:
        tokens = h.flatten(2).transpose(1, 2)  # (B, N, C)
        tokens = torch.cat([tokens.mean(1, keepdim=True), tokens], dim=1) + self.pos  # (B, N + 1, C)
        k, v = self.kv(tokens).chunk(2, dim=-1)  # 2 x (B, N + 1, C)
        return attend(self.q(tokens[:, :1]), k, v, self.num_heads)[:, 0]  # (B, C)


#################################################################################
#                                NoisyClassifier                                #
#################################################################################


class NoisyClassifier(nn.Module):
    """forward(x (B, C, H, W), c_noise (B,), cond=None) -> logits (B, num_classes).

    The encoder of difflab.nets.UNet with the same arguments (widths base_channels * channel_mult[l],
    num_res_blocks per level, attention at attention_resolutions for an image_size input), the middle
    blocks (with self-attention unless mid_attention=False), and a pooled linear head. c_noise follows the
    networks' convention (TimeClassifier feeds 1000 t). The class is the output, so cond may carry no "class_labels" or "context".
    pool="attention" learns a positional embedding for the image_size input and so takes only that size;
    pool="mean" takes any H, W divisible by 2^(levels - 1).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        base_channels: int = 64,
        channel_mult: tuple[int, ...] = (1, 2, 2),
        num_res_blocks: int = 2,
        attention_resolutions: tuple[int, ...] = (16,),
        image_size: int = 32,
        num_heads: int = 4,
        dropout: float = 0.0,
        pool: str = "attention",
        mid_attention: bool = True,
    ):
        super().__init__()
        if len(channel_mult) < 1 or num_res_blocks < 1:
            raise DifflabError(
                f"NoisyClassifier needs at least one level and one block per level; got "
                f"channel_mult={channel_mult}, num_res_blocks={num_res_blocks}"
            )
        if num_classes < 2:
            raise DifflabError(f"a classifier needs num_classes >= 2; got {num_classes!r}")
        self.pool_kind = check_choice("pooling", pool, POOLINGS)
        self.in_channels, self.num_classes, self.num_levels = in_channels, num_classes, len(channel_mult)
        self.image_size = image_size
        widths = [base_channels * m for m in channel_mult]
        for w in widths:
            check_heads(w, num_heads)
        attention_levels = attention_levels_from_resolutions(attention_resolutions, image_size, len(widths))
        emb_dim = 4 * base_channels
        block = partial(UNetBlock, emb_dim=emb_dim, dropout=dropout, num_heads=num_heads, context_width=None)
        self.time_embed = ConditionEmbedding(
            emb_dim, frequency_dim=base_channels, owner="NoisyClassifier", accepts_context=False
        )

        # Encoder: the UNet's down path and middle (difflab.nets.unet.encoder), without skips.
        self.in_conv, self.down_blocks, self.mid_blocks, block_widths = encoder(
            block, in_channels, base_channels, widths, num_res_blocks, attention_levels, mid_attention
        )
        ch = block_widths[-1]

        # Head: GroupNorm, SiLU, pooling, linear logits.
        self.out_norm = group_norm(ch)
        last_size = image_size // 2 ** (len(widths) - 1)
        self.pool = AttentionPool(ch, last_size * last_size, num_heads) if pool == "attention" else None
        self.head = nn.Linear(ch, num_classes)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        # As UNet: default conv/linear init, small embeddings, zero-init residual branches (each block
        # starts as the identity); the zero head makes the untrained classifier uniform over classes.
        self.time_embed.initialize_weights()
        zero_init_residual_branches(self)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def _check(self, x: Tensor, cond: Cond | None) -> None:
        factor = 2 ** (self.num_levels - 1)
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[2] % factor or x.shape[3] % factor:
            raise DifflabError(
                f"NoisyClassifier(in_channels={self.in_channels}, {self.num_levels} levels) takes x of shape "
                f"(B, {self.in_channels}, H, W) with H and W divisible by {factor}; got {tuple(x.shape)}"
            )
        if self.pool is not None and tuple(x.shape[2:]) != (self.image_size, self.image_size):
            raise DifflabError(
                f"NoisyClassifier with pool='attention' was built for {self.image_size}x{self.image_size} "
                f"images (its positional embedding has that size); got {tuple(x.shape[2:])}: build it with "
                "image_size=<your size>, or use pool='mean', which takes any size"
            )
        if cond and (cond.get("class_labels") is not None or cond.get("context") is not None):
            raise DifflabError(
                "NoisyClassifier predicts the class, it is not conditioned on one: call it with cond=None "
                "and pass the labels to the loss (cond['class_labels'] of NoisyClassifierLoss)"
            )

    def forward(self, x: Tensor, c_noise: Tensor, cond: Cond | None = None) -> Tensor:
        self._check(x, cond)
        emb, _, _ = self.time_embed(c_noise, None, x.shape[0])  # (B, E)
        h = self.in_conv(x)  # (B, C_0, H, W)
        for blk in self.down_blocks:
            h = blk(h) if isinstance(blk, Downsample) else blk(h, emb, None, None)  # (B, C_l, H_l, W_l)
        for blk in self.mid_blocks:
            h = blk(h, emb, None, None)  # (B, C_last, H_last, W_last)
        h = F.silu(self.out_norm(h))  # (B, C_last, H_last, W_last)
        pooled = h.mean((2, 3)) if self.pool is None else self.pool(h)  # (B, C_last)
        return self.head(pooled)  # (B, num_classes)

