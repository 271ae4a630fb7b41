"""`difflab edit / inpaint / invert / interpolate` on a tiny digits run: what they write, and one message for
each bad input."""

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from difflab.cli.main import app
from difflab.data.digits import load_digits
from difflab.jobs.train import run_train
from difflab.viz.io import to_uint8

runner = CliRunner()
TINY = ["model.options={base_channels: 8, channel_mult: [1], num_res_blocks: 1, attention_resolutions: [], "
        "num_heads: 1}", "train.batch_size=16", "train.sample_every=0", "train.ckpt_every=2", "train.log_every=1",
        "sample.steps=4"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("edit")
    run_train("digits", root / "run", steps=2, overrides=TINY)
    x, _ = load_digits("test")
    Image.fromarray(to_uint8(x[:1])[0, :, :, 0]).save(root / "digit.png")
    np.save(root / "digit.npy", x[:3].numpy())
    mask = np.zeros((8, 8), np.uint8)
    mask[:, :4] = 255  # regenerate the left half
    Image.fromarray(mask).save(root / "left.png")
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(root / "mask9.png")
    np.save(root / "rgb.npy", np.zeros((1, 3, 8, 8), np.float32))
    return root


def ok(args):
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r.output


def test_edit_writes_the_input_and_its_edits(files):
    out = ok(["edit", files / "run", "--image", files / "digit.png", "--strength", "0.5", "--n", "3",
              "--out", files / "e.png", "--save-array", files / "e.npy"])
    assert "3 edits at strength 0.5, 2 denoiser evaluations" in out  # half of the run's 4-step grid
    assert Image.open(files / "e.png").size == (4 * 160, 160)  # input + 3 edits, 10 px cells x 16
    assert np.load(files / "e.npy").shape == (3, 1, 8, 8)


def test_inpaint_keeps_the_known_half_exactly(files):
    for method in ("replace", "repaint"):
        ok(["inpaint", files / "run", "--image", files / "digit.npy", "--mask", files / "left.png", "--method", method,
            "--jump-length", "2", "--resample", "2", "--save-array", files / f"{method}.npy", "--out", files / "i.png"])
        x, given = np.load(files / f"{method}.npy"), np.load(files / "digit.npy")
        assert x.shape == (3, 1, 8, 8)
        np.testing.assert_array_equal(x[..., 4:], np.clip(given[..., 4:], -1, 1))
        assert not np.allclose(x[..., :4], given[..., :4])


def test_invert_writes_the_noise_and_reconstructs(files):
    out = ok(["invert", files / "run", "--image", files / "digit.png", "--out", files / "z.npy", "--reconstruct",
              "--sampler", "heun", "--steps", "8"])
    assert np.load(files / "z.npy").shape == (1, 1, 8, 8) and (files / "z.reconstruction.png").is_file()
    # Heun: 2 x 8 - 2 (no correction leaving the data end, nor into t = 1 of the flow)
    assert "reconstruction PSNR" in out and "14 denoiser evaluations" in out


def test_interpolate_strip_and_gif(files):
    ok(["interpolate", files / "run", "--seeds", "1", "2", "--frames", "5", "--out", files / "s.png"])
    assert Image.open(files / "s.png").size == (5 * 160, 160)
    ok(["interpolate", files / "run", "--seeds", "1", "2", "--frames", "4", "--out", files / "s.gif"])
    gif = Image.open(files / "s.gif")
    assert gif.n_frames == 6  # there and back: 4 + 2
    out = ok(["interpolate", files / "run", "--images", files / "digit.png", files / "digit.npy", "--frames", "3",
              "--out", files / "i.png"])
    assert "from the noise of" in out and Image.open(files / "i.png").size == (3 * 160, 160)


@pytest.mark.parametrize(("args", "message"), [
    (["inpaint", "RUN", "--image", "digit.png", "--mask", "mask9.png", "--out", "x.png"],
     "is 9x9 pixels but the image is 8x8"),
    (["edit", "RUN", "--image", "rgb.npy", "--out", "x.png"], "has shape (1, 3, 8, 8); this run takes (N, 1, 8, 8)"),
    (["edit", "RUN", "--image", "digit.png", "--strength", "1.5", "--out", "x.png"], "strength must be a number in [0, 1]"),
    (["edit", "RUN", "--image", "digit.png", "--strength", "-0.5", "--out", "x.png"], "strength must be a number in [0, 1]"),
    (["invert", "RUN", "--image", "digit.png", "--out", "z.npy", "--sampler", "ddpm"],
     "inversion needs a deterministic sampler"),
    (["edit", "RUN", "--image", "missing.png", "--out", "x.png"], "does not exist"),
    (["edit", "RUN", "--image", "left.png", "--out", "x.jpg"], "must end in .png"),
    (["inpaint", "RUN", "--image", "digit.png", "--mask", "left.png", "--method", "blend", "--out", "x.png"],
     "unknown inpainting method 'blend'"),
    (["edit", "RUN", "--image", "digit.png", "--class", "3", "--out", "x.png"], "not class-conditional"),
    (["interpolate", "RUN", "--frames", "3", "--out", "x.png"], "give --seeds A B or --images A B"),
    (["interpolate", "RUN", "--seeds", "1", "2", "--frames", "1", "--out", "x.png"], "frames must be an integer >= 2"),
])
def test_bad_input_gets_one_message(files, args, message):
    args = [str(files / a) if a in ("RUN", "digit.png", "mask9.png", "rgb.npy", "missing.png", "left.png") else a
            for a in args]
    args = [str(files / "run") if a == str(files / "RUN") else a for a in args]
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output


def test_class_runs_interpolate_between_two_classes_and_edit_with_guidance(files):
    run_train("digits-cond", files / "cond", steps=2, overrides=TINY)
    out = ok(["interpolate", files / "cond", "--seeds", "0", "0", "--class", "3", "--class", "7", "--frames", "3",
              "--out", files / "c.png"])
    assert "4 denoiser evaluations" in out  # both conditions in one batched call per step
    ok(["edit", files / "cond", "--image", files / "digit.png", "--class", "7", "--guidance", "3", "--n", "2",
        "--out", files / "g.png"])
    r = runner.invoke(app, ["interpolate", str(files / "cond"), "--seeds", "0", "1", "--class", "3", "--class", "7",
                            "--guidance", "3", "--out", str(files / "c.png")])
    assert r.exit_code == 2 and "takes no guidance weight" in r.output
