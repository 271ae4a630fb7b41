"""The `folder` preset fits a small folder and a laptop CPU (issue 19): 30 images train, the network is small."""

from __future__ import annotations

import numpy as np
from PIL import Image

from difflab.config.loader import load_config
from difflab.jobs.train import run_train


def test_folder_preset_is_sized_for_a_cpu_and_small_folders():
    cfg = load_config("folder", [])
    assert cfg.train.batch_size <= 30  # a folder of 30 images holds a whole batch
    assert cfg.train.warmup_steps <= 200  # a few hundred CPU steps are not all warm-up
    assert cfg.model.options["base_channels"] <= 32


def test_folder_preset_trains_on_thirty_images(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    root.mkdir()
    for i in range(30):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / f"{i}.png")
    result = run_train("folder", tmp_path / "run", steps=2, overrides=[
        f"data.options.root={root}", "model.options.base_channels=8", "model.options.num_heads=1",
        "train.sample_every=0"])
    assert result.step == 2
