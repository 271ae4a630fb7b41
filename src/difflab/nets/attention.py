"""Multi-head self-attention and cross-attention on token sequences.

Attention(Q, K, V) = softmax(Q K^T / sqrt(d)) V per head (Vaswani et al. 2017; seed 000 "Cross-Attention
Mechanism"). Self-attention takes Q, K, V from the same tokens; cross-attention takes Q from the image
features and K, V from the text tokens (Rombach et al. 2022 §3.3; seeds 000, 003 "Cross-Attention /
Joint Attention", 004 "Cross-attention with prompt embedding"). Both run through
torch.nn.functional.scaled_dot_product_attention, which picks a fused kernel where one exists.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from difflab.utils.errors import DifflabError


def check_heads(dim: int, num_heads: int) -> int:
    """The per-head width dim // num_heads, or a DifflabError when the heads do not divide the width."""
    if num_heads < 1 or dim % num_heads:
        raise DifflabError(f"width {dim} is not divisible by num_heads={num_heads}; choose heads that divide it")
    return dim // num_heads


def attend(q: Tensor, k: Tensor, v: Tensor, num_heads: int, mask: Tensor | None = None) -> Tensor:
    """softmax(Q K^T / sqrt(d)) V for each of num_heads heads of width d = C / num_heads.

    q: (B, N, C), k and v: (B, L, C), mask: (B, L) bool, True for keys that may be attended. A masked
    key gets weight exactly zero, so its value never reaches the output. Returns (B, N, C).
    """
    B, N, C = q.shape
    L = k.shape[1]
    d = C // num_heads
    q = q.reshape(B, N, num_heads, d).transpose(1, 2)  # (B, h, N, d)
    k = k.reshape(B, L, num_heads, d).transpose(1, 2)  # (B, h, L, d)
    v = v.reshape(B, L, num_heads, d).transpose(1, 2)  # (B, h, L, d)
    attn_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, L)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, h, N, d)
    return out.transpose(1, 2).reshape(B, N, C)  # (B, N, C)


class SelfAttention(nn.Module):
    """Q, K, V = x W_q, x W_k, x W_v from one fused projection; output projection W_o."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        check_heads(dim, num_heads)
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # 3 x (B, N, C)
        return self.proj(attend(q, k, v, self.num_heads))  # (B, N, C)


class CrossAttention(nn.Module):
    """Q = x W_q from the image tokens, K = c W_k and V = c W_v from the context tokens; output W_o.

    Context tokens whose mask is False (padding, dropped captions) do not affect the output.
    """

    def __init__(self, dim: int, context_dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        check_heads(dim, num_heads)
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(context_dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor, mask: Tensor | None = None) -> Tensor:
        k, v = self.kv(context).chunk(2, dim=-1)  # 2 x (B, L, C)
        return self.proj(attend(self.q(x), k, v, self.num_heads, mask))  # (B, N, C)


def count_attention_layers(module: nn.Module) -> int:
    """How many self- and cross-attention layers `module` holds: 0 for a purely convolutional network."""
    return sum(isinstance(m, (SelfAttention, CrossAttention)) for m in module.modules())
