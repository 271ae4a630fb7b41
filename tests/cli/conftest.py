"""One tiny trained run shared by the CLI tests: toy2d (8 Gaussians, 8 classes), class-conditional MLP."""

import pytest
from typer.testing import CliRunner

from difflab.cli.main import app

TINY = ["--set", "model.options={hidden_dim: 16, num_blocks: 1}", "--set", "data.options={name: 8gaussians, n: 256}",
        "--set", "model.conditioning=class", "--set", "train.batch_size=32", "--set", "train.sample_every=0",
        "--set", "train.log_every=1", "--set", "train.ckpt_every=2", "--set", "sample.steps=2", "--set", "sample.n=8"]


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory):
    """A class-conditional toy2d run trained for 2 steps (its samples are noise-like, which is all the CLI needs)."""
    run = tmp_path_factory.mktemp("cli") / "toy"
    r = CliRunner().invoke(app, ["train", "toy2d", "--out", str(run), "--steps", "2", *TINY])
    assert r.exit_code == 0, r.output
    return run


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """An unconditional digits (1 x 8 x 8 images) U-Net of 8 base channels trained for 2 steps."""
    run = tmp_path_factory.mktemp("cli") / "digits"
    r = CliRunner().invoke(app, ["train", "digits", "--out", str(run), "--steps", "2",
                                 "--set", "model.options.base_channels=8", "--set", "train.batch_size=16",
                                 "--set", "train.sample_every=0", "--set", "sample.n=4", "--set", "sample.steps=2"])
    assert r.exit_code == 0, r.output
    return run
