"""Autoencoder runs: train-autoencoder's folder, the latent scale it stores, resume, load_autoencoder and its
fingerprint, the held-out rule, eval's scores against an exact (identity) autoencoder, reconstruct, and one
clear message for each kind of bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors import safe_open

from difflab.autoencoders import Autoencoder
from difflab.config.autoencoder import held_out_images, load_autoencoder_config
from difflab.config.schema import DataConfig
from difflab.data.shapes import Shapes
from difflab.jobs.autoencoder_runs import is_autoencoder_run, load_autoencoder, load_autoencoder_run
from difflab.jobs.reconstruct import evaluate_autoencoder, run_reconstruct, score_autoencoder
from difflab.jobs.train_autoencoder import fixed_images, run_train_autoencoder
from difflab.train.checkpoint import read_config
from difflab.utils.errors import DifflabError
from difflab.viz.io import to_uint8

TINY = ["data.options={n: 48, seed: 0, size: 32, combos: train, jitter: 1}", "autoencoder.options.base_channels=8",
        "train.batch_size=8", "train.ckpt_every=2", "train.sample_every=2", "train.log_every=1", "scale_items=24",
        "preview=4", "objective.disc_start=1", "objective.disc_channels=8", "objective.disc_layers=1"]


def _train(out, preset="shapes-kl", steps=2, extra=(), resume=False):
    return run_train_autoencoder(None if resume else preset, out, steps=steps, overrides=[*TINY, *extra],
                                 resume=resume)


@pytest.fixture(scope="module")
def kl_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ae") / "kl"
    _train(out)
    return out


@pytest.fixture(scope="module")
def vq_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ae") / "vq"
    _train(out, "shapes-vq", extra=["autoencoder.options.num_codes=16"])
    return out


def test_a_run_folder_says_its_kind_and_shapes_and_previews_show_reconstructions(kl_run):
    meta = json.loads((kl_run / "run.json").read_text())
    assert meta["kind"] == "autoencoder" and meta["autoencoder"] == "kl" and meta["factor"] == 4
    assert meta["data_shape"] == [3, 32, 32] and meta["latent_shape"] == [4, 8, 8]
    assert is_autoencoder_run(kl_run)
    from PIL import Image

    grid = Image.open(kl_run / "reconstructions.png")  # 4 inputs above 4 outputs, 34-pixel tiles at scale 2
    assert grid.size == (4 * 34 * 2, 2 * 34 * 2)
    assert (kl_run / "reconstructions" / "step-0000002.png").is_file()
    saved = read_config(kl_run / "ckpt-2")["objective"]  # every loss option written out: a later default
    assert {"disc_norm", "adaptive", "disc_lr", "perceptual_weight"} <= set(saved)  # change keeps the run


def test_the_latent_scale_is_one_over_the_std_of_the_ema_latents_in_config_and_weights(kl_run):
    ckpt = kl_run / "ckpt-2"
    saved = read_config(ckpt)["latent_scale"]
    with safe_open(str(ckpt / "ema.safetensors"), framework="pt") as f:
        buffer = float(f.get_tensor("_latent_scale"))
    assert saved == pytest.approx(buffer, rel=1e-12) and saved != 1.0
    # independently: the population std of every latent element of the same 24 training images, float64
    loaded = load_autoencoder_run(kl_run)
    cfg = load_autoencoder_config("shapes-kl", TINY)
    x = fixed_images(Shapes(48, seed=0, size=32, combos="train", jitter=1), cfg.scale_items, cfg.train.seed)
    z = loaded.model.encode(x).double().flatten().numpy()
    assert saved == pytest.approx(1.0 / z.std(), rel=1e-9)
    assert loaded.model.latent_scale == pytest.approx(saved, rel=1e-12)
    assert torch.allclose(loaded.model.to_latent(x), loaded.model.encode(x) * saved)


def test_resume_repeats_the_uninterrupted_run_with_its_latent_scale(tmp_path):
    _train(tmp_path / "straight", steps=4)
    _train(tmp_path / "resumed", steps=2)
    _train(tmp_path / "resumed", steps=2, resume=True)
    a, b = (load_autoencoder_run(tmp_path / name) for name in ("straight", "resumed"))
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    assert a.config.latent_scale == b.config.latent_scale == a.model.latent_scale
    assert a.model.fingerprint == b.model.fingerprint  # same weights, same fingerprint


def test_load_autoencoder_sets_a_fingerprint_of_the_weights(kl_run, vq_run):
    a, again, other = load_autoencoder(kl_run), load_autoencoder(kl_run), load_autoencoder(vq_run)
    assert isinstance(a, Autoencoder) and not a.training
    assert len(a.fingerprint) == 64 and a.fingerprint == again.fingerprint != other.fingerprint
    assert type(other).__name__ == "VQAutoencoder"


def test_the_held_out_images_are_the_pairs_the_run_did_not_train_on():
    held, described = held_out_images(DataConfig("shapes", {"n": 10, "seed": 3, "combos": "train"}))
    assert held.options == {"n": 10, "seed": 4, "combos": "holdout"} and "did not train on" in described
    held, _ = held_out_images(DataConfig("shapes", {"combos": [["circle", "red"], [1, 2]]}))
    assert len(held.options["combos"]) == 33 and [0, 0] not in held.options["combos"] and [1, 2] not in held.options["combos"]
    held, described = held_out_images(DataConfig("shapes", {"combos": "all"}))
    assert held.options["combos"] == "all" and held.options["seed"] == 1 and "can occur in training" in described
    held, described = held_out_images(DataConfig("folder", {"root": "x", "hflip": True}))
    assert held.options == {"root": "x"} and "training data" in described


class Identity(Autoencoder):
    """An exact autoencoder (f = 1): what a perfect reconstruction scores."""

    def __init__(self):
        super().__init__(1, 3)
        self.w = torch.nn.Parameter(torch.ones(()))

    def encode(self, x):
        return x

    def decode(self, z):
        return z


def test_an_exact_autoencoder_scores_infinite_psnr_unit_ssim_and_full_readout_agreement():
    class Loaded:
        model = Identity()

    r = score_autoencoder(Loaded(), Shapes(40, seed=5), batch_size=16, readout=True)
    assert r["psnr"] == math.inf and r["mse"] == 0 and r["ssim"] == pytest.approx(1.0)
    assert r["hf_ratio_laplacian"] == pytest.approx(1.0) and r["hf_ratio_fft"] == pytest.approx(1.0)
    assert all(r[f"readout_{k}"] == 1.0 for k in ("shape", "colour", "shape_colour", "all")) and r["n"] == 40


def test_eval_scores_held_out_shapes_and_a_vq_codebook(vq_run, tmp_path):
    report = evaluate_autoencoder(vq_run, n=24, batch_size=10, json_path=tmp_path / "eval.json")
    r = report.results
    assert r["n"] == 24 and 0 <= r["readout_shape_colour"] <= r["readout_shape"] <= 1
    assert 0 < r["code_usage"] <= 1 and 1 <= r["perplexity"] <= 16
    assert report.settings["data"]["options"]["combos"] == "holdout"
    assert json.loads((tmp_path / "eval.json").read_text())["results"]["n"] == 24
    with pytest.raises(DifflabError, match="--sampler applies to a diffusion run only"):
        evaluate_autoencoder(vq_run, n=4, sampler="ddim")


def test_reconstruct_reads_a_folder_like_training_data(kl_run, tmp_path):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    for i, u8 in enumerate(to_uint8(Shapes(5, seed=2).render(slice(0, 5)))):  # 32x32 PNGs, read back exactly
        Image.fromarray(u8).save(images / f"{i}.png")
    r = run_reconstruct(kl_run, images, tmp_path / "grid.png", n=3)
    assert r["images"] == 5 and 0 < r["psnr"] < 100
    assert Image.open(tmp_path / "grid.png").size[0] >= 3 * 34 * 2  # 3 tiles a row at scale 2 (the caption may be wider)
    with pytest.raises(DifflabError, match="do not divide by the autoencoder's downsampling factor f = 4"):
        run_reconstruct(kl_run, images, tmp_path / "g.png", size=30)


# ---------------------------------------------------------------- bad input, one message each


def test_missing_damaged_and_wrong_kind_folders(tmp_path, kl_run):
    with pytest.raises(DifflabError, match="does not exist: give an autoencoder run folder"):
        load_autoencoder(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DifflabError, match="neither an autoencoder run"):
        load_autoencoder(tmp_path / "empty")
    diffusion = tmp_path / "diffusion"
    diffusion.mkdir()
    (diffusion / "run.json").write_text(json.dumps({"data_shape": [3, 32, 32], "num_classes": None,
                                                    "context_dim": None}))
    with pytest.raises(DifflabError, match="is a diffusion run, not an autoencoder run"):
        load_autoencoder(diffusion)
    with pytest.raises(DifflabError, match="is a diffusion run"):
        _train(diffusion, resume=True)
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(kl_run, broken)
    for ckpt in broken.glob("ckpt-*"):
        (ckpt / "ema.safetensors").write_bytes(b"garbage")
    with pytest.raises(DifflabError, match="no checkpoint of .* is intact: remove the damaged"):
        load_autoencoder(broken)
    (broken / "run.json").write_text("{not json")
    with pytest.raises(DifflabError, match="run.json is damaged"):
        load_autoencoder(broken)


def test_bad_configs_are_refused_before_anything_is_written(tmp_path):
    cases = [
        ("shapes-kl", ["data.options.size=34"], "34x34 pixels do not divide by the autoencoder's downsampling factor"),
        ("no-such", [], "unknown autoencoder preset 'no-such'; autoencoder presets are: folder-kl, shapes-kl"),
        ("digits", [], "unknown autoencoder preset 'digits'"),
        ("shapes-kl", ["autoencoder.options.colour=1"], "has no option 'colour'; its options are"),
        ("shapes-kl", ["objective.gan=1"], r"the autoencoder loss \(objective\) has no option 'gan'"),
        ("shapes-kl", ["objective.kl_weight=abc"], "option kl_weight: expected a number"),
        ("shapes-kl", ["autoencoder.kind=pca"], "unknown autoencoder kind 'pca'"),
        ("shapes-kl", ["autoencoder.options.in_channels=1"], "set from the run's data"),
    ]
    for preset, extra, message in cases:
        out = tmp_path / "run"
        with pytest.raises(DifflabError, match=message):
            _train(out, preset, extra=extra)
        assert not out.exists(), preset
    diffusion_yaml = tmp_path / "d.yaml"
    diffusion_yaml.write_text("process: {name: flow}\nmodel: {network: unet}\n")
    with pytest.raises(DifflabError, match="is a diffusion config .* `difflab train"):
        _train(tmp_path / "run", str(diffusion_yaml))


def test_folder_kl_trains_on_a_folder_of_images_and_is_scored_on_it(tmp_path):
    from PIL import Image

    images = tmp_path / "pictures"
    images.mkdir()
    for i, u8 in enumerate(to_uint8(Shapes(6, seed=4).render(slice(0, 6)))):
        Image.fromarray(u8).resize((40, 48)).save(images / f"{i}.png")  # other sizes: resized and cropped to 32
    out = tmp_path / "run"
    run_train_autoencoder("folder-kl", out, steps=1, overrides=[
        f"data.options.root={images}", "train.batch_size=2", "autoencoder.options.base_channels=8",
        "objective.disc_weight=0", "scale_items=6", "preview=2"])
    assert json.loads((out / "run.json").read_text())["data_shape"] == [3, 32, 32]
    report = evaluate_autoencoder(out, n=4)
    assert report.results["n"] == 4 and "readout_shape" not in report.results
    assert report.notes == ["no held-out split for this data set: scored on its training images"]
