"""DiT: the diffusion transformer (Peebles & Xie 2023, "Scalable Diffusion Models with Transformers").

Patchify the (latent) image into p x p tokens, add 2-D position embeddings, run transformer blocks
whose LayerNorms are modulated by the conditioning vector c = time(c_noise) + class(y) (adaLN-Zero:
shift, scale and a residual gate regressed from c, the gates zero-initialized so every block starts as
the identity), optionally cross-attend to text tokens after self-attention (PixArt-alpha's placement),
then a final adaLN layer and a linear map back to patch pixels, and unpatchify. Seeds 000 "Diffusion
Transformers (DiT)" (patchify, position + timestep embeddings, blocks, unpatchify) and 003 "Diffusion
Transformer (DiT)" (scale/shift for the timestep, cross-attention for text).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from difflab.nets.attention import CrossAttention, SelfAttention, check_heads
from difflab.nets.embeddings import ConditionEmbedding
from difflab.utils.cond import Cond
from difflab.utils.errors import DifflabError, check_choice

#################################################################################
#                      Patches and 2-D sine-cosine positions                    #
#################################################################################


def patchify(x: Tensor, p: int) -> Tensor:
    """(B, C, H, W) -> (B, (H/p)(W/p), p*p*C): row-major patches, each flattened in (p, p, C) order."""
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // p, p, W // p, p)  # (B, C, h, p, w, p)
    x = x.permute(0, 2, 4, 3, 5, 1)  # (B, h, w, p, p, C)
    return x.reshape(B, (H // p) * (W // p), p * p * C)  # (B, N, p*p*C)


def unpatchify(tokens: Tensor, p: int, channels: int, h: int, w: int) -> Tensor:
    """(B, h*w, p*p*C) -> (B, C, h*p, w*p), the inverse of patchify (DiT's unpatchify)."""
    B = tokens.shape[0]
    x = tokens.reshape(B, h, w, p, p, channels)  # (B, h, w, p, p, C)
    x = x.permute(0, 5, 1, 3, 2, 4)  # (B, C, h, p, w, p)
    return x.reshape(B, channels, h * p, w * p)  # (B, C, H, W)


def sincos_1d(dim: int, positions: Tensor) -> Tensor:
    """[sin(pos w_k), cos(pos w_k)] with w_k = 10000^(-k / (dim/2)), k < dim/2 (Vaswani et al. 2017): (N,) -> (N, dim)."""
    omega = 10000.0 ** (-torch.arange(dim // 2, dtype=torch.float64) / (dim // 2))  # (dim/2,)
    args = positions.double()[:, None] * omega[None]  # (N, dim/2)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)  # (N, dim)


def sincos_2d(dim: int, grid_size: int) -> Tensor:
    """Fixed 2-D position embedding of a grid_size x grid_size grid (MAE / DiT): (grid_size^2, dim), float32.

    Token (i, j) (row-major, as patchify orders them) gets [sincos_1d(i) (dim/2), sincos_1d(j) (dim/2)].
    """
    if dim % 4:
        raise DifflabError(f"2-D sin-cos position embeddings need a width divisible by 4; got {dim}")
    pos = torch.arange(grid_size)
    rows, cols = pos.repeat_interleave(grid_size), pos.repeat(grid_size)  # (N,), (N,)
    return torch.cat([sincos_1d(dim // 2, rows), sincos_1d(dim // 2, cols)], dim=1).float()  # (N, dim)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: x (1 + scale) + shift, with (B, 1, D) shift and scale broadcast over the tokens."""
    return x * (1 + scale) + shift


#################################################################################
#                                Core DiT blocks                                #
#################################################################################


class DiTBlock(nn.Module):
    """x += g1 Attn(adaLN(x; b1, s1)); [x += CrossAttn(LN(x), context)]; x += g2 MLP(adaLN(x; b2, s2)).

    (b1, s1, g1, b2, s2, g2) = Linear(SiLU(c)), the adaLN-Zero block of Peebles & Xie 2023 §3.2.
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0, context_width: int | None = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(hidden_size, num_heads)
        self.cross_norm = nn.LayerNorm(hidden_size, eps=1e-6) if context_width is not None else None
        self.cross = CrossAttention(hidden_size, context_width, num_heads) if context_width is not None else None
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        mlp_hidden = int(hidden_size * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, mlp_hidden), nn.GELU(approximate="tanh"), nn.Linear(mlp_hidden, hidden_size)
        )
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x: Tensor, c: Tensor, context: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c)[:, None].chunk(6, dim=-1)  # (B, 1, D)
        x = x + gate1 * self.attn(modulate(self.norm1(x), shift1, scale1))  # (B, N, D)
        if self.cross is not None:
            x = x + self.cross(self.cross_norm(x), context, mask)  # (B, N, D)
        return x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2))  # (B, N, D)


class FinalLayer(nn.Module):
    """Linear(adaLN(x; b, s)) -> p*p*C values per token, (b, s) = Linear(SiLU(c))."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(c)[:, None].chunk(2, dim=-1)  # (B, 1, D)
        return self.linear(modulate(self.norm_final(x), shift, scale))  # (B, N, p*p*C)


#################################################################################
#                                      DiT                                      #
#################################################################################


class DiT(nn.Module):
    """forward(x (B, C, S, S), c_noise (B,), cond) -> (B, C, S, S) with S = input_size.

    pos_embed is "sincos" (fixed, DiT's choice) or "learned" (initialized at the sin-cos values).
    num_classes adds a class embedding with a learned null class to c; context_dim adds cross-attention
    to text tokens of that width in every block. The output has the input's channels (no learned
    variance: the parameterization layer decides what the output means). interval_embedding adds the
    embedding of a second time, cond["interval"] (difflab.nets.embeddings.ConditionEmbedding).
    """

    def __init__(
        self,
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        num_classes: int | None = None,
        context_dim: int | None = None,
        num_null_tokens: int = 1,
        pos_embed: str = "sincos",
        interval_embedding: bool = False,
    ):
        super().__init__()
        check_heads(hidden_size, num_heads)
        check_choice("position embedding", pos_embed, ("sincos", "learned"))
        if patch_size < 1 or input_size % patch_size:
            raise DifflabError(f"input_size {input_size} is not divisible by patch_size {patch_size}; pick a divisor")
        self.input_size, self.patch_size, self.in_channels = input_size, patch_size, in_channels
        self.grid_size = input_size // patch_size
        self.cond_embed = ConditionEmbedding(
            hidden_size, num_classes, context_dim, hidden_size, num_null_tokens, frequency_dim=256, owner="DiT",
            interval=interval_embedding,
        )
        self.x_embedder = nn.Linear(patch_size * patch_size * in_channels, hidden_size)
        pos = sincos_2d(hidden_size, self.grid_size)[None]  # (1, N, D)
        if pos_embed == "learned":
            self.pos_embed = nn.Parameter(pos)
        else:
            self.register_buffer("pos_embed", pos, persistent=False)
        ctx = hidden_size if context_dim is not None else None
        self.blocks = nn.ModuleList(DiTBlock(hidden_size, num_heads, mlp_ratio, ctx) for _ in range(depth))
        self.final_layer = FinalLayer(hidden_size, patch_size, in_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        # Transformer layers: Xavier-uniform weights, zero biases (DiT, following ViT).
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        # Time MLP, class table and null text tokens: N(0, 0.02^2).
        self.cond_embed.initialize_weights()
        for block in self.blocks:
            # adaLN-Zero: zero shift, scale and gate, so every block starts as the identity.
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
            # The cross-attention branch also starts closed (PixArt-alpha zero-inits its output projection).
            if block.cross is not None:
                nn.init.zeros_(block.cross.proj.weight)
                nn.init.zeros_(block.cross.proj.bias)
        # Zero-init the final modulation and output layer: the untrained network predicts 0.
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def forward(self, x: Tensor, c_noise: Tensor, cond: Cond | None = None) -> Tensor:
        S, C = self.input_size, self.in_channels
        if x.ndim != 4 or tuple(x.shape[1:]) != (C, S, S):
            raise DifflabError(
                f"this DiT takes x of shape (B, {C}, {S}, {S}); got {tuple(x.shape)}: build it with "
                "in_channels and input_size matching the data"
            )
        c, context, mask = self.cond_embed(c_noise, cond, x.shape[0])  # (B, D), (B, K+L, D), (B, K+L)
        h = self.x_embedder(patchify(x, self.patch_size)) + self.pos_embed  # (B, N, D)
        for block in self.blocks:
            h = block(h, c, context, mask)  # (B, N, D)
        h = self.final_layer(h, c)  # (B, N, p*p*C)
        return unpatchify(h, self.patch_size, C, self.grid_size, self.grid_size)  # (B, C, S, S)


#################################################################################
#                                   DiT sizes                                   #
#################################################################################

# (depth, hidden_size, num_heads) of DiT's Table 1, plus T(iny) for tests and CPU demos.
DIT_SIZES = {
    "XL": (28, 1152, 16),
    "L": (24, 1024, 16),
    "B": (12, 768, 12),
    "S": (12, 384, 6),
    "T": (2, 64, 2),
}

DiT_models = {
    f"DiT-{name}/{p}": partial(DiT, depth=depth, hidden_size=hidden, num_heads=heads, patch_size=p)
    for name, (depth, hidden, heads) in DIT_SIZES.items()
    for p in (2, 4, 8)
}
