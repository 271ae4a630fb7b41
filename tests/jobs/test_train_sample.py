"""End to end: train a tiny model from the CLI, sample it, resume it; clear messages for bad runs."""

import numpy as np
import pytest
from typer.testing import CliRunner

from difflab.cli.main import app

runner = CliRunner()
TINY = ["--set", "model.options={hidden_dim: 32, num_blocks: 1}", "--set", "data.options={name: moons, n: 512}",
        "--set", "train.batch_size=64", "--set", "train.log_every=5", "--set", "train.sample_every=0",
        "--set", "train.ckpt_every=10", "--set", "sample.steps=4"]


def test_train_sample_resume(tmp_path):
    run = tmp_path / "run"
    r = runner.invoke(app, ["train", "toy2d", "--out", str(run), "--steps", "10", *TINY])
    assert r.exit_code == 0, r.output
    assert (run / "ckpt-10" / "model.safetensors").is_file() and (run / "loss.png").is_file()
    r = runner.invoke(app, ["sample", str(run), "--n", "50", "--out", str(tmp_path / "s.png"),
                            "--save-array", str(tmp_path / "s.npy"), "--steps", "4"])
    assert r.exit_code == 0, r.output
    x = np.load(tmp_path / "s.npy")
    assert x.shape == (50, 2) and np.abs(x).max() > 1  # vectors are not clamped to the image box
    assert not (tmp_path / "s.labels.npy").exists()  # an unconditional run has no labels to save
    r = runner.invoke(app, ["train", "--out", str(run), "--resume", "--steps", "20"])
    assert r.exit_code == 0, r.output
    assert (run / "ckpt-20").is_dir()
    # a fresh run into a folder that has checkpoints is refused rather than overwritten
    r = runner.invoke(app, ["train", "toy2d", "--out", str(run), "--steps", "5", *TINY])
    assert r.exit_code == 2 and "resume" in r.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["sample", "/nonexistent/run"], "does not exist"),
        (["train", "digitz"], "unknown preset"),
        (["train", "digits", "--set", "train.lrr=1"], "unknown config key train.lrr"),
    ],
)
def test_bad_input_gets_one_message(args, message, tmp_path):
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and message in r.output.replace("\n", " ")
    assert "Traceback" not in r.output


def test_empty_image_folder_and_incompatible_resume(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = runner.invoke(app, ["train", "folder", "--set", f"data.options.root={empty}", "--out", str(tmp_path / "f")])
    assert r.exit_code == 2 and "no images found" in r.output.replace("\n", " ")
    run = tmp_path / "run"
    assert runner.invoke(app, ["train", "toy2d", "--out", str(run), "--steps", "3", *TINY]).exit_code == 0
    # resuming with a different network width cannot load the checkpoint: the message names the mismatch
    r = runner.invoke(app, ["train", "--out", str(run), "--resume", "--steps", "6",
                            "--set", "model.options={hidden_dim: 48, num_blocks: 1}"])
    out = r.output.replace("\n", " ")
    assert r.exit_code == 2 and "different architecture" in out and "Traceback" not in out
