"""A tiny randomly initialised diffusers AutoencoderKL (f = 4, 4 latent channels), saved by the tests themselves,
and a tiny shapes-text run on its latents (TINY, train)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from difflab.cli.main import app

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


TINY = ["--set", "data.options={n: 48, seed: 0, size: 32, combos: train, jitter: 1}",
        "--set", "model.options={base_channels: 8, channel_mult: [1, 2], num_res_blocks: 1, attention_resolutions: [4], "
                 "num_heads: 2}",
        "--set", "train.batch_size=16", "--set", "train.sample_every=2", "--set", "train.ckpt_every=2",
        "--set", "train.log_every=1", "--set", "sample.steps=2", "--set", "sample.n=4", "--set", "train.warmup_steps=1"]


def train(run, ae, *extra, steps="2", resume=False):
    args = ["train", *([] if resume else ["shapes-text"]), "--out", str(run), "--steps", steps,
            "--set", f"model.autoencoder={ae}", *TINY, *extra, *(["--resume"] if resume else [])]
    return CliRunner().invoke(app, args)
