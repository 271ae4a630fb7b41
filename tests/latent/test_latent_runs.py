"""Latent diffusion end to end through the CLI: a text-to-image run on the latents of a tiny diffusers
AutoencoderKL (f = 4, 4 channels), trained 2 steps; sampling and eval decode; bad input is one message."""

from __future__ import annotations

import json
import shutil

import numpy as np
import torch
from PIL import Image
from typer.testing import CliRunner

from difflab.cli.main import app
from difflab.jobs.generate import generate
from difflab.jobs.runs import load_run
from tests.latent.tiny_ae import save_autoencoder, train


def test_run_records_latents_and_previews_decode(latent_run):
    run, ae = latent_run
    meta = json.loads((run / "run.json").read_text())
    assert meta["data_shape"] == [4, 8, 8]
    assert meta["latent"]["image_shape"] == [3, 32, 32] and meta["latent"]["autoencoder"] == str(ae)
    assert len(meta["latent"]["fingerprint"]) == 64 and meta["latent"]["factor"] == 4
    assert np.load(run / "latents" / "latents.npy", mmap_mode="r").shape == (48, 4, 8, 8)
    # a 2 x 2 grid of decoded 32 x 32 pictures (1-pixel padding) at scale 4: not 8 x 8 latents
    assert Image.open(run / "samples.png").size == (4 * 2 * 34,) * 2


def test_sample_decodes_with_cfg_and_negative_prompt(latent_run, tmp_path):
    run, _ = latent_run
    r = CliRunner().invoke(app, ["sample", str(run), "--prompt", "a small red circle in the center", "--n", "3",
                                 "--steps", "2", "--guidance", "3", "--negative", "a blue square", "--seed", "5",
                                 "--save-array", str(tmp_path / "x.npy"), "--out", str(tmp_path / "g.png")])
    assert r.exit_code == 0, r.output
    x = np.load(tmp_path / "x.npy")
    assert x.shape == (3, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    loaded = load_run(run)
    z = generate(loaded.model, loaded.meta, 3, sampler="default", steps=2, schedule="default", seed=5, guidance=3.0,
                 prompts=["a small red circle in the center"], negative="a blue square",
                 text_encoder=loaded.text_encoder).x
    assert z.shape == (3, 4, 8, 8)
    with torch.no_grad():
        pixels = loaded.autoencoder.from_latent(z).clamp(-1, 1)
    np.testing.assert_allclose(x, pixels.numpy(), atol=1e-5)


def test_eval_scores_decoded_pictures(latent_run, tmp_path):
    run, _ = latent_run
    r = CliRunner().invoke(app, ["eval", str(run), "--n", "4", "--steps", "2", "--metrics", "sw2",
                                 "--json", str(tmp_path / "e.json")])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["results"]["n_fake"] == 4 and np.isfinite(report["results"]["sw2"])


def test_resume_reuses_the_cache_and_a_changed_autoencoder_is_refused(latent_run, tmp_path):
    run, ae = latent_run
    copy, ae2 = tmp_path / "run", tmp_path / "ae"
    shutil.copytree(run, copy)
    shutil.copytree(ae, ae2)  # the same weights elsewhere: the same fingerprint
    stamp = (copy / "latents" / "latents.npy").stat().st_mtime_ns
    r = train(copy, ae2, "--set", "train.sample_every=0", steps="1", resume=True)
    assert r.exit_code == 0, r.output
    assert "encode" not in r.output and (copy / "latents" / "latents.npy").stat().st_mtime_ns == stamp
    save_autoencoder(ae2, seed=1)  # other weights under the path the run now names
    r = train(copy, ae2, steps="1", resume=True)
    assert r.exit_code != 0 and "the autoencoder changed since the latent cache" in r.output
    r = CliRunner().invoke(app, ["sample", str(copy), "--prompt", "a red circle", "--out", str(tmp_path / "s.png")])
    assert r.exit_code != 0 and "changed since" in r.output and "put the original weights back" in r.output


def test_bad_input_one_message_each(tmp_path):
    ae = save_autoencoder(tmp_path / "ae")
    r = train(tmp_path / "a", ae, "--set", "model.options.in_channels=3")
    assert r.exit_code != 0 and "model.options.in_channels=3 does not fit the autoencoder's latents" in r.output
    assert not (tmp_path / "a").exists()
    r = train(tmp_path / "b", tmp_path / "missing")
    assert r.exit_code != 0 and "missing does not exist" in r.output
    big = save_autoencoder(tmp_path / "ae8", levels=4)  # f = 8 cannot take 36 x 36 images
    r = train(tmp_path / "c", big, "--set", "data.options.size=36")
    assert r.exit_code != 0 and "cannot be encoded by an autoencoder with downsampling factor 8" in r.output
    (ae / "diffusion_pytorch_model.safetensors").write_bytes(b"corrupt")
    r = train(tmp_path / "e", ae)
    assert r.exit_code != 0 and "cannot load the autoencoder" in r.output
    r = CliRunner().invoke(app, ["train", "shapes-latent", "--out", str(tmp_path / "d")])
    assert r.exit_code != 0 and "--set model.autoencoder=AE" in r.output and not (tmp_path / "d").exists()


def test_folder_latent_caches_both_flips_and_samples_a_class(tmp_path):
    images = tmp_path / "images"
    rng = np.random.default_rng(0)
    for i in range(8):
        (images / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(images / f"c{i % 2}" / f"{i}.png")
    ae = save_autoencoder(tmp_path / "ae")
    r = CliRunner().invoke(app, [
        "train", "folder-latent", "--out", str(tmp_path / "run"), "--steps", "1", "--set", f"model.autoencoder={ae}",
        "--set", f"data.options.root={images}", "--set", "data.options.size=32", "--set", "train.batch_size=4",
        "--set", "data.options.labels_from_subfolders=true", "--set", "model.conditioning=class",
        "--set", "model.options={base_channels: 8, channel_mult: [1, 2], num_res_blocks: 1, attention_resolutions: [4]}",
        "--set", "train.sample_every=0", "--set", "sample.steps=2", "--set", "sample.n=2"])
    assert r.exit_code == 0, r.output
    cache = tmp_path / "run" / "latents"
    assert np.load(cache / "latents.npy", mmap_mode="r").shape == (8, 2, 4, 8, 8)
    assert np.load(cache / "field-label.npy").tolist() == [0, 0, 0, 0, 1, 1, 1, 1]  # sorted c0/*, c1/*
    r = CliRunner().invoke(app, ["sample", str(tmp_path / "run"), "--class", "1", "--guidance", "2", "--n", "2",
                                 "--save-array", str(tmp_path / "x.npy"), "--no-grid"])
    assert r.exit_code == 0, r.output
    assert np.load(tmp_path / "x.npy").shape == (2, 3, 32, 32)
    assert np.load(tmp_path / "x.labels.npy").tolist() == [1, 1]


def test_sdedit_and_interpolation_of_a_latent_run_decode(latent_run, tmp_path):
    run, _ = latent_run
    picture = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(picture)
    r = CliRunner().invoke(app, ["edit", str(run), "--image", str(picture), "--strength", "0.5", "--n", "2",
                                 "--steps", "2", "--prompt", "a red circle", "--out", str(tmp_path / "e.png"),
                                 "--save-array", str(tmp_path / "e.npy")])
    assert r.exit_code == 0, r.output
    assert np.load(tmp_path / "e.npy").shape == (2, 3, 32, 32)
    assert Image.open(tmp_path / "e.png").size == (4 * 3 * 34, 4 * 34)  # input + 2 edits, 32 px at scale 4
    r = CliRunner().invoke(app, ["interpolate", str(run), "--seeds", "0", "1", "--frames", "3", "--steps", "2",
                                 "--out", str(tmp_path / "s.png"), "--prompt", "a red circle"])
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "s.png").size == (4 * 3 * 34, 4 * 34)
    # inpaint, invert and interpolate --images of a latent run: tests/latent/test_latent_editing.py
