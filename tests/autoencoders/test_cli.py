"""The autoencoder commands end to end: train-autoencoder, resume, reconstruct, eval AE_RUN --json; each bad
input one `error:` line with exit code 2 and no traceback."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from difflab.cli.main import app

runner = CliRunner()
TINY = ["--set", "data.options={n: 32, seed: 0, size: 32, combos: train, jitter: 1}",
        "--set", "autoencoder.options.base_channels=8", "--set", "train.batch_size=8", "--set", "train.ckpt_every=0",
        "--set", "train.sample_every=0", "--set", "scale_items=16", "--set", "objective.disc_weight=0"]


def _ok(args):
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    return r.output


def _refused(args, message):
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "error:" in r.output and "Traceback" not in r.output, r.output
    assert message in " ".join(r.output.split()), r.output


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "kl"
    text = _ok(["train-autoencoder", "shapes-kl", "--out", str(out), "--steps", "1", *TINY])
    assert "latent scale 1/std" in text
    return out


def test_train_resume_reconstruct_and_eval(run, tmp_path):
    _refused(["train-autoencoder", "shapes-kl", "--out", str(run), "--steps", "1", *TINY], "already holds a run")
    _refused(["sample", str(run), "--n", "2", "--out", str(tmp_path / "s.png")], "is an autoencoder run, not a diffusion run")
    r = runner.invoke(app, ["sample", str(run), "--n", "2"])
    assert "is damaged" not in " ".join(r.output.split()), r.output  # not wrapped in the damaged-file advice
    text = _ok(["train-autoencoder", "--out", str(run), "--resume", "--steps", "1"])
    assert "resumed from" in text and "at step 2" in text
    from PIL import Image

    from difflab.data.shapes import Shapes
    from difflab.viz.io import to_uint8

    images = tmp_path / "images"
    images.mkdir()
    for i, u8 in enumerate(to_uint8(Shapes(3, seed=1).render(slice(0, 3)))):
        Image.fromarray(u8).save(images / f"{i}.png")
    text = _ok(["reconstruct", str(run), "--images", str(images), "--out", str(tmp_path / "grid.png")])
    assert "psnr" in text and (tmp_path / "grid.png").is_file()
    text = _ok(["eval", str(run), "--n", "12", "--json", str(tmp_path / "eval.json")])
    assert "readout_shape_colour" in text and "did not train on" in " ".join(text.split())
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["results"]["n"] == 12 and report["settings"]["autoencoder"] == "kl"


def test_bad_input_is_one_message(run, tmp_path):
    _refused(["train-autoencoder", "shapes-kl", "--out", str(tmp_path / "a"), "--steps", "1", *TINY,
              "--set", "data.options.size=34"], "do not divide by the autoencoder's downsampling factor f = 4")
    _refused(["train-autoencoder", "no-such", "--out", str(tmp_path / "b")], "unknown autoencoder preset 'no-such'")
    _refused(["train", "shapes-kl", "--out", str(tmp_path / "c")], "unknown preset 'shapes-kl'")
    _refused(["train-autoencoder", "shapes-kl", "--out", str(tmp_path / "d"), "--set", "autoencoder.options.depth=3"],
             "has no option 'depth'")
    _refused(["reconstruct", str(tmp_path / "missing"), "--images", str(tmp_path)], "does not exist")
    _refused(["reconstruct", str(run), "--images", str(tmp_path / "none")], "does not exist")
    _refused(["eval", str(run), "--steps", "4"], "--steps applies to a diffusion run only")
    _refused(["train-autoencoder"], "name an autoencoder preset")
