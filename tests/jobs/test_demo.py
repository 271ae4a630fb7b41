"""The demo twice on one folder: the second run continues the first (no refusal, no harm), and every
time budget comes with its steps (samples.json, the caption on samples.png)."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from difflab.jobs.demo import caption, run_demo

TINY = ["model.options.base_channels=8", "model.options.num_heads=1", "train.batch_size=32",
        "train.log_every=1", "train.sample_every=0"]


def test_demo_twice_resumes_and_labels_its_samples(tmp_path):
    first = run_demo(tmp_path, minutes=0.005, overrides=TINY, forward_pictures=False)
    assert first["steps"] >= 1 and first["minutes_budget"] == 0.005
    second = run_demo(tmp_path, minutes=0.005, overrides=TINY, forward_pictures=False)
    assert second["steps"] > first["steps"]  # resumed, not restarted and not refused
    saved = json.loads((tmp_path / "samples.json").read_text())
    assert saved == second
    assert 0 < saved["mean_confidence"] <= 1 and 0 < saved["coverage"] <= 1
    grid = np.asarray(Image.open(tmp_path / "samples.png").convert("L"))
    assert grid.shape[1] == 10 * 10 * 8  # 10 columns of (8 + 2 pad) pixels at scale 8
    assert grid.shape[0] > grid.shape[1]  # the caption band sits above the square grid


def test_caption_puts_steps_beside_the_time():
    text = caption({"steps": 412, "images_seen": 52736, "train_seconds": 240.2, "nfe": 20,
                    "mean_confidence": 0.9312, "coverage": 1.0})
    assert text.splitlines() == ["digits, 412 steps (52,736 images) in 4:00, sampler NFE 20",
                                 "digit classifier: mean confidence 0.931, classes covered 100%"]
