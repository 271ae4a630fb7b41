from __future__ import annotations

import pytest
import torch

from difflab.nets import CrossAttention, SelfAttention, attend
from difflab.utils import DifflabError


def reference_attention(q, k, v, heads, mask=None):
    """softmax(Q K^T / sqrt(d)) V head by head, written out with explicit exponentials."""
    B, N, C = q.shape
    d = C // heads
    out = torch.empty_like(q)
    for h in range(heads):
        sl = slice(h * d, (h + 1) * d)
        logits = q[..., sl] @ k[..., sl].transpose(1, 2) / d**0.5  # (B, N, L)
        w = torch.exp(logits - logits.amax(-1, keepdim=True))
        if mask is not None:
            w = w * mask[:, None, :]
        out[..., sl] = (w / w.sum(-1, keepdim=True)) @ v[..., sl]
    return out


def test_attend_matches_the_formula(gen):
    q, k, v = (torch.randn(2, 5, 8, generator=gen, dtype=torch.float64) for _ in range(3))
    mask = torch.tensor([[1, 1, 0, 1, 0], [0, 1, 1, 1, 1]], dtype=torch.bool)
    torch.testing.assert_close(attend(q, k, v, 2), reference_attention(q, k, v, 2))
    torch.testing.assert_close(attend(q, k, v, 2, mask), reference_attention(q, k, v, 2, mask))


def test_self_attention_is_attend_on_its_projections(gen):
    m = SelfAttention(8, 4)
    x = torch.randn(2, 6, 8, generator=gen)
    q, k, v = m.qkv(x).chunk(3, dim=-1)
    torch.testing.assert_close(m(x), m.proj(reference_attention(q, k, v, 4)), atol=1e-5, rtol=1e-5)


def test_masked_context_tokens_do_not_change_cross_attention(gen):
    m = CrossAttention(8, context_dim=6, num_heads=2)
    x = torch.randn(2, 5, 8, generator=gen)
    ctx = torch.randn(2, 4, 6, generator=gen)
    mask = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 0]], dtype=torch.bool)
    garbage = torch.where(mask[..., None], ctx, 100 * torch.randn(2, 4, 6, generator=gen))
    out = m(x, ctx, mask)
    torch.testing.assert_close(m(x, garbage, mask), out)
    assert not torch.allclose(m(x, garbage), m(x, ctx))  # without the mask the garbage does matter
    # Row 0 sees only its first two tokens: the same as a context cut to them.
    torch.testing.assert_close(m(x[:1], ctx[:1, :2]), out[:1], atol=1e-6, rtol=1e-5)


def test_heads_must_divide_the_width():
    with pytest.raises(DifflabError, match="num_heads=3"):
        SelfAttention(8, 3)
