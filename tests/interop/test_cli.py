"""`difflab sample` on a diffusers model folder (saved here) and a hub id missing from the cache."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from difflab.cli.main import app
from tests.interop.tiny import BETAS, diffusers, save, tiny_dit, tiny_unet

runner = CliRunner()


def test_sample_a_diffusers_folder(tmp_path):
    folder = save(tmp_path / "model", tiny_unet(), diffusers.DDIMScheduler(**BETAS))
    out, arr = tmp_path / "grid.png", tmp_path / "x.npy"
    r = runner.invoke(app, ["sample", str(folder), "--n", "2", "--steps", "3", "--sampler", "dpmpp_2m",
                            "--out", str(out), "--save-array", str(arr)])
    assert r.exit_code == 0, r.output
    x = np.load(arr)
    assert out.exists() and x.shape == (2, 2, 8, 8) and np.abs(x).max() <= 1.0  # clamped to [-1, 1]
    assert "2 samples, 3 denoiser evaluations" in " ".join(r.output.split())  # dpmpp_2m: 1 NFE per step


def test_class_guidance_on_a_dit_folder(tmp_path):
    folder = save(tmp_path / "dit", tiny_dit(), diffusers.DDPMScheduler(**BETAS))
    r = runner.invoke(app, ["sample", str(folder), "--n", "2", "--steps", "2", "--class", "1", "--guidance", "2",
                            "--save-array", str(tmp_path / "x.npy")])
    assert r.exit_code == 0, r.output
    assert np.load(tmp_path / "x.labels.npy").tolist() == [1, 1]


def test_a_hub_id_not_in_the_cache_is_one_message(tmp_path):
    r = runner.invoke(app, ["sample", "difflab-tests/never-cached", "--n", "1", "--out", str(tmp_path / "g.png")])
    assert r.exit_code != 0 and "never downloads" in r.output and "Traceback" not in r.output


def test_a_text_pipeline_uses_its_own_tokenizer_and_text_encoder(tmp_path):
    from difflab.interop import load_diffusers
    from tests.interop.tiny import tiny_cond_unet, tiny_text_pipeline

    folder = tiny_text_pipeline(tmp_path / "sd", tiny_cond_unet(), diffusers.DDIMScheduler(**BETAS))
    D = load_diffusers(folder)
    ctx, mask = D.text_encoder.encode(["a red circle", "blue"])
    assert ctx.shape == (2, 8, 8) and bool(mask.all())  # padded to model_max_length, every position used
    assert (D.null_cond["context"] - D.text_encoder.encode([""])[0]).abs().max() == 0
    r = runner.invoke(app, ["sample", str(folder), "--n", "2", "--steps", "2", "--prompt", "a red circle",
                            "--guidance", "3", "--save-array", str(tmp_path / "x.npy")])
    assert r.exit_code == 0, r.output
    assert np.load(tmp_path / "x.npy").shape == (2, 2, 8, 8)
    r = runner.invoke(app, ["sample", str(folder), "--n", "1", "--steps", "2", "--save-array", str(tmp_path / "y.npy")])
    assert r.exit_code != 0 and "give a prompt" in r.output
