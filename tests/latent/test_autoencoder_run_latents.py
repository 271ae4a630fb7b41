"""Latent diffusion on a difflab autoencoder run (train-autoencoder shapes-kl, 1 step): the cached latents are
z = s E(x) with the run's measured latent scale s, and the fingerprint is the loader's."""

from __future__ import annotations

import json

import numpy as np
import torch
from typer.testing import CliRunner

from difflab.cli.main import app
from difflab.data.shapes import Shapes
from difflab.jobs.autoencoder_runs import load_autoencoder

AE_TINY = ["--set", "data.options={n: 32, seed: 0, size: 32, combos: train, jitter: 1}",
           "--set", "autoencoder.options.base_channels=8", "--set", "train.batch_size=8", "--set", "train.ckpt_every=0",
           "--set", "train.sample_every=0", "--set", "scale_items=16", "--set", "objective.disc_weight=0"]
LATENT_TINY = ["--set", "data.options={n: 24, seed: 2, size: 32, combos: train, jitter: 1}",
               "--set", "model.options={base_channels: 8, channel_mult: [1, 2], num_res_blocks: 1, "
                        "attention_resolutions: [4], num_heads: 2}",
               "--set", "train.batch_size=8", "--set", "train.sample_every=0", "--set", "sample.steps=2",
               "--set", "model.conditioning=none", "--set", "sample.guidance=1"]  # no text encoder to load


def test_shapes_latent_on_a_kl_run(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["train-autoencoder", "shapes-kl", "--out", str(tmp_path / "kl"), "--steps", "1", *AE_TINY])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["train", "shapes-latent", "--out", str(tmp_path / "run"), "--steps", "1",
                            "--set", f"model.autoencoder={tmp_path / 'kl'}", *LATENT_TINY])
    assert r.exit_code == 0, r.output
    ae = load_autoencoder(tmp_path / "kl")
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["data_shape"] == [ae.latent_channels, 8, 8] and meta["latent"]["fingerprint"] == ae.fingerprint
    assert meta["latent"]["latent_scale"] == ae.latent_scale != 1.0  # measured by train-autoencoder
    z = np.load(tmp_path / "run" / "latents" / "latents.npy")
    x = Shapes(24, seed=2, size=32, combos="train", jitter=1).render(list(range(24)))
    with torch.no_grad():
        expected = ae.encode(x) * ae.latent_scale  # s E(x): the posterior mean, scaled
    np.testing.assert_allclose(z, expected.numpy(), rtol=1e-4, atol=1e-5)
    r = runner.invoke(app, ["sample", str(tmp_path / "run"), "--n", "2", "--steps", "2",
                            "--save-array", str(tmp_path / "x.npy"), "--no-grid"])
    assert r.exit_code == 0, r.output
    assert np.load(tmp_path / "x.npy").shape == (2, 3, 32, 32)
