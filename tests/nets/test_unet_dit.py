"""Architecture-specific checks: UNet attention levels and size preset, DiT patches, positions, adaLN-Zero."""

from __future__ import annotations

import math

import pytest
import torch

from difflab.nets import DiT, UNet, UNet_models, count_parameters, patchify, sincos_2d, unpatchify
from difflab.nets.classifier import NoisyClassifier
from difflab.nets.unet import SpatialAttention, attention_levels_from_resolutions
from difflab.utils import DifflabError


def test_attention_resolutions_become_levels():
    assert attention_levels_from_resolutions((16, 8), 32, 3) == {1, 2}
    assert attention_levels_from_resolutions((32,), 32, 1) == {0}
    with pytest.raises(DifflabError, match=r"valid resolutions are: \[32, 16, 8\]"):
        attention_levels_from_resolutions((12,), 32, 3)
    with pytest.raises(DifflabError, match="valid resolutions"):
        attention_levels_from_resolutions((4,), 32, 3)


def test_unet_places_attention_at_the_chosen_levels():
    net = UNet(base_channels=8, channel_mult=(1, 2, 2), num_res_blocks=1, num_heads=2, attention_resolutions=(8,))
    widths_with_attention = [m.norm.num_channels for m in net.down_blocks.modules() if isinstance(m, SpatialAttention)]
    assert widths_with_attention == [16]  # level 2 only (8 = 32 / 2^2), width 8 * 2


def test_mid_attention_false_leaves_no_attention_anywhere(perturb):
    """ADM's middle has self-attention even with attention_resolutions=(): mid_attention=False removes it, so
    the network is convolutional only; the default keeps it (old runs load), and the two differ by exactly
    one SpatialAttention of the middle's width."""
    kwargs = dict(in_channels=1, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, num_heads=2,
                  attention_resolutions=(), image_size=16)
    default, conv_only = UNet(**kwargs), UNet(**kwargs, mid_attention=False)
    attention_of = lambda net: [m for m in net.modules() if isinstance(m, SpatialAttention)]  # noqa: E731
    assert [m.norm.num_channels for m in attention_of(default)] == [16]
    assert attention_of(conv_only) == [] and not any("attn" in k for k in conv_only.state_dict())
    extra = sum(p.numel() for p in attention_of(default)[0].parameters())
    assert count_parameters(default) - count_parameters(conv_only) == extra
    # The same weights everywhere else: the default with its middle attention bypassed is the same function.
    perturb(conv_only)
    default.load_state_dict(conv_only.state_dict(), strict=False)
    default.mid_blocks[0].attn = None
    x, t = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0)), torch.tensor([10.0, 700.0])
    assert torch.equal(default(x, t), conv_only(x, t))
    classifier = NoisyClassifier(in_channels=1, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, num_heads=2,
                                 attention_resolutions=(), image_size=16, pool="mean", mid_attention=False)
    assert attention_of(classifier) == []


def test_unet_10m_preset_is_near_ten_million_parameters():
    n = count_parameters(UNet_models["UNet-10M"](in_channels=3))
    assert 8e6 <= n <= 12e6


@pytest.mark.parametrize("channels,height,width,p", [(1, 8, 8, 2), (3, 16, 8, 4), (4, 32, 32, 8)])
def test_patchify_round_trips(channels, height, width, p, gen):
    x = torch.randn(2, channels, height, width, generator=gen)
    tokens = patchify(x, p)
    assert tokens.shape == (2, (height // p) * (width // p), p * p * channels)
    assert torch.equal(unpatchify(tokens, p, channels, height // p, width // p), x)


def test_patch_embedding_equals_a_strided_convolution(gen):
    # DiT embeds patches with Conv2d(kernel = stride = p); our Linear on patchify(x) must be the same map.
    net = DiT(input_size=8, patch_size=2, in_channels=3, hidden_size=16, depth=1, num_heads=2)
    x = torch.randn(2, 3, 8, 8, generator=gen)
    lin = net.x_embedder
    conv = torch.nn.Conv2d(3, 16, 2, stride=2)
    with torch.no_grad():
        conv.weight.copy_(lin.weight.reshape(16, 2, 2, 3).permute(0, 3, 1, 2))
        conv.bias.copy_(lin.bias)
    torch.testing.assert_close(lin(patchify(x, 2)), conv(x).flatten(2).transpose(1, 2))


def test_sincos_2d_matches_the_formula():
    dim, grid = 8, 3
    pe = sincos_2d(dim, grid)
    assert pe.shape == (grid * grid, dim)
    for i in range(grid):
        for j in range(grid):
            expected = []
            for pos in (i, j):
                omegas = [10000.0 ** (-k / 2) for k in range(2)]
                expected += [math.sin(pos * w) for w in omegas] + [math.cos(pos * w) for w in omegas]
            torch.testing.assert_close(pe[i * grid + j], torch.tensor(expected))
    with pytest.raises(DifflabError, match="divisible by 4"):
        sincos_2d(6, 2)


def test_position_embedding_kinds():
    fixed = DiT(input_size=8, in_channels=1, hidden_size=16, depth=1, num_heads=2)
    learned = DiT(input_size=8, in_channels=1, hidden_size=16, depth=1, num_heads=2, pos_embed="learned")
    assert "pos_embed" not in fixed.state_dict() and not fixed.pos_embed.requires_grad
    assert isinstance(learned.pos_embed, torch.nn.Parameter)
    torch.testing.assert_close(learned.pos_embed.detach(), fixed.pos_embed)
    with pytest.raises(DifflabError, match="learned, sincos"):
        DiT(input_size=8, pos_embed="rope")
    with pytest.raises(DifflabError, match="patch_size 3"):
        DiT(input_size=8, patch_size=3)


def test_adaln_zero_blocks_start_as_the_identity(gen):
    net = DiT(input_size=8, in_channels=1, hidden_size=16, depth=2, num_heads=2, context_dim=5)
    h, c = torch.randn(2, 16, 16, generator=gen), torch.randn(2, 16, generator=gen)
    ctx, mask = net.cond_embed.context(torch.randn(2, 3, 5, generator=gen))
    for block in net.blocks:
        torch.testing.assert_close(block(h, c, ctx, mask), h)
