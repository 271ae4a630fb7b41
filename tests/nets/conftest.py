"""Shared helpers for the network tests: tiny conditional configurations and a zero-init perturbation."""

from __future__ import annotations

import pytest
import torch

from difflab.nets import DiT, MLPNet, UNet


def _tiny_net(kind: str, channels: int = 3, size: int = 8, **cond_kwargs) -> torch.nn.Module:
    """A few-thousand-parameter network of each family; cond_kwargs adds num_classes / context_dim."""
    if kind == "mlp":
        return MLPNet(data_dim=3, hidden_dim=32, num_blocks=2, **cond_kwargs)
    if kind == "unet":
        return UNet(
            in_channels=channels, base_channels=16, channel_mult=(1, 2), num_res_blocks=1, num_heads=2,
            attention_resolutions=(16,), image_size=32, **cond_kwargs,
        )
    return DiT(input_size=size, patch_size=2, in_channels=channels, hidden_size=32, depth=2, num_heads=2, **cond_kwargs)


@pytest.fixture
def tiny_net():
    """tiny_net(kind, channels=3, size=8, **cond_kwargs): a small MLPNet ("mlp", data_dim 3), UNet or DiT."""
    return _tiny_net


@pytest.fixture
def perturb():
    """Add N(0, 0.1^2) noise to every parameter, so zero-initialized gates and outputs become non-trivial."""

    def _perturb(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in module.parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        return module

    return _perturb
