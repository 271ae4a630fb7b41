from __future__ import annotations

import math

import pytest
import torch

from difflab.nets import ClassEmbedding, ContextAdapter, TimestepEmbedding, timestep_embedding
from difflab.utils import DifflabError


@pytest.mark.parametrize("dim", [8, 9])
def test_timestep_embedding_matches_the_formula(dim):
    c = torch.tensor([0.0, 1.0, -1.3, 37.5, 999.0], dtype=torch.float64)
    emb = timestep_embedding(c, dim)
    assert emb.shape == (5, dim) and emb.dtype == torch.float32
    half = dim // 2
    for b, cb in enumerate(c.tolist()):
        for k in range(half):
            w = 10000.0 ** (-k / half)
            assert emb[b, k].item() == pytest.approx(math.cos(cb * w), abs=1e-4)
            assert emb[b, half + k].item() == pytest.approx(math.sin(cb * w), abs=1e-4)
    if dim % 2:
        assert torch.all(emb[:, -1] == 0)


@pytest.mark.parametrize("a,b", [(500.0, 501.0), (-1.0, -0.95), (0.25, 0.3)])
def test_timestep_embedding_separates_nearby_levels_on_both_scales(a, b):
    # DDPM's c = 1000 t steps by 1, EDM's c = ln(sigma)/4 by ~0.05 between neighbouring levels.
    e = timestep_embedding(torch.tensor([a, b]), 256)
    assert (e[0] - e[1]).norm() > 0.1


def test_timestep_mlp_reads_the_sinusoid():
    m = TimestepEmbedding(16, frequency_dim=8)
    c = torch.tensor([3.0, 4.0])
    expected = m.mlp[2](torch.nn.functional.silu(m.mlp[0](timestep_embedding(c, 8))))
    torch.testing.assert_close(m(c), expected)


def test_class_embedding_null_row():
    emb = ClassEmbedding(4, 6)
    labels = torch.tensor([0, 3, 2])
    drop = torch.tensor([False, True, False])
    out = emb(labels, drop)
    table = emb.table.weight
    torch.testing.assert_close(out[0], table[0])
    torch.testing.assert_close(out[1], table[4])  # the null row
    torch.testing.assert_close(out[2], table[2])
    torch.testing.assert_close(emb(None, batch=2), table[4].expand(2, -1))
    with pytest.raises(DifflabError, match="num_classes"):
        ClassEmbedding(0, 6)


def test_context_adapter_tokens_and_mask():
    ad = ContextAdapter(context_dim=5, dim=7, num_null_tokens=2)
    ctx = torch.randn(3, 4, 5)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    drop = torch.tensor([False, False, True])
    tokens, keep = ad(ctx, mask, drop)
    assert tokens.shape == (3, 6, 7) and keep.shape == (3, 6) and keep.dtype == torch.bool
    torch.testing.assert_close(tokens[:, :2], ad.null_tokens.expand(3, -1, -1))
    torch.testing.assert_close(tokens[:, 2:], ad.proj(ad.norm(ctx)))
    expected = torch.cat([torch.ones(3, 2, dtype=torch.bool), mask & ~drop[:, None]], dim=1)
    assert torch.equal(keep, expected)
    null_tokens, null_mask = ad(None, batch=2)
    assert null_tokens.shape == (2, 2, 7) and null_mask.all()
    with pytest.raises(DifflabError, match="context_dim=5"):
        ad(torch.randn(3, 4, 6))
