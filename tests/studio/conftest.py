"""Tiny runs shared by the studio tests: a digits U-Net (base_channels 8) and a 2-D MLP, a few steps each."""

import pytest

pytest.importorskip("starlette", reason="the studio extra is not installed: pip install 'difflab[studio]'")

from difflab.jobs.train import run_train  # noqa: E402

TINY_UNET = ("model.options={base_channels: 8, channel_mult: [1], num_res_blocks: 1, attention_resolutions: [], "
             "num_heads: 1}")
FAST = ["train.batch_size=32", "train.sample_every=0", "train.warmup_steps=1"]


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory):
    """A folder holding three runs: digits/ (1x8x8 images), digits-cond/ (the same with 10 classes) and
    toy/ (2-D points)."""
    root = tmp_path_factory.mktemp("studio-runs")
    run_train("digits", root / "digits", steps=2, overrides=[TINY_UNET, *FAST])
    run_train("digits-cond", root / "digits-cond", steps=2, overrides=[TINY_UNET, *FAST])
    run_train("toy2d", root / "toy", steps=2, overrides=["model.options={hidden_dim: 16, num_blocks: 1}",
                                                          "data.options={name: moons, n: 600}", *FAST])
    return root


@pytest.fixture(scope="session")
def table(runs_dir):
    from difflab.studio.runs import RunTable

    return RunTable([runs_dir])
