"""A tiny randomly initialised diffusers AutoencoderKL (f = 4, 4 latent channels), saved by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers", reason="the diffusers extra is not installed: pip install 'difflab[diffusers]'")


def tiny_autoencoder(seed: int = 0, levels: int = 3, latent_channels: int = 4, scaling_factor: float = 0.5,
                     **extra) -> torch.nn.Module:
    torch.manual_seed(seed)
    return diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels, block_out_channels=(8,) * levels, layers_per_block=1,
        latent_channels=latent_channels, norm_num_groups=4, sample_size=32, scaling_factor=scaling_factor, **extra,
    ).eval()


def save_autoencoder(folder: Path, seed: int = 0, **kw) -> Path:
    tiny_autoencoder(seed, **kw).save_pretrained(folder, safe_serialization=True)
    return folder
