"""The baselines as runs: `difflab train / sample / eval` on tiny VAE, GAN and PixelCNN runs (tmp_path), their
likelihood on the held-out split against the model's own log P, resume, and one message per bad request."""

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from difflab.cli.main import app
from difflab.data.digits import load_digits
from difflab.jobs.runs import load_run

runner = CliRunner()
FAST = ["--set", "train.batch_size=16", "--set", "train.sample_every=2", "--set", "sample.n=16", "--set", "train.ckpt_every=2",
        "--set", "train.warmup_steps=1"]
TINY = {"vae": "model.options={latent_dim: 4, width: 8}",
        "gan": "model.options={latent_dim: 8, width: 8, d_width: 8, upsample: 1}",
        "pixelcnn": "model.options={hidden: 8, n_layers: 2, kernel_size: 3}"}


def invoke(*args):
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r.output


def refused(*args) -> str:
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code != 0 and "Traceback" not in r.output, r.output
    return " ".join(r.output.split())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("baselines")
    for family, options in TINY.items():
        invoke("train", f"digits-{family}", "--out", root / family, "--steps", 2, *FAST, "--set", options)
    return root


@pytest.mark.parametrize("family", list(TINY))
def test_train_sample_eval_each_family(runs, family, tmp_path):
    run = runs / family
    assert (run / "ckpt-2").is_dir() and (run / "samples.png").is_file()  # the end-of-training preview grid
    assert json.loads((run / "run.json").read_text())["data_shape"] == [1, 8, 8]
    out = invoke("sample", run, "--n", 6, "--out", tmp_path / "s.png", "--save-array", tmp_path / "s.npy")
    x = np.load(tmp_path / "s.npy")
    assert x.shape == (6, 1, 8, 8) and x.min() >= -1 and x.max() <= 1 and "from" in out
    nfe = 64 if family == "pixelcnn" else 1  # one pass per pixel, one for the VAE's decoder and the generator
    assert f"(6 samples, {nfe} network evaluation{'s' if nfe > 1 else ''})" in " ".join(out.split())  # no denoiser in a baseline
    again = invoke("sample", run, "--n", 6, "--no-grid", "--save-array", tmp_path / "t.npy")
    assert np.array_equal(x, np.load(tmp_path / "t.npy")) and again  # seeded: the same samples
    invoke("eval", run, "--n", 20, "--batch-size", 20, "--json", tmp_path / "e.json")
    report = json.loads((tmp_path / "e.json").read_text())
    res, st = report["results"], report["settings"]
    invoke("eval", run, "--n", 20, "--batch-size", 7, "--metrics", "fdd", "--json", tmp_path / "e7.json")
    fdd7 = json.loads((tmp_path / "e7.json").read_text())["results"]["fdd"]
    assert abs(fdd7 - res["fdd"]) <= 1e-6 * res["fdd"]  # per-sample seeds: the samples do not depend on the batch
    assert {"fdd", "precision", "recall", "class_coverage"} <= set(res)
    assert st["sampler"] == family and st["schedule"] is None
    assert st["nfe"] == (64 if family == "pixelcnn" else 1)
    if family == "gan":
        assert "bits_per_dim" not in res and "nll" not in st["metrics"]  # a GAN has no likelihood
    else:
        assert "'split': 'test'" in st["nll"]["data"] and st["nll"]["levels"] == 17
        assert 0 < res["bits_per_dim"] < 10 and res["bits_per_dim_se"] > 0


def test_pixelcnn_bits_per_dim_are_its_exact_log_p_of_the_held_out_images(runs, tmp_path):
    invoke("eval", runs / "pixelcnn", "--metrics", "nll", "--n", 12, "--json", tmp_path / "p.json")
    res = json.loads((tmp_path / "p.json").read_text())["results"]
    model = load_run(runs / "pixelcnn").model
    x = load_digits("test", 8)[0][:12]
    log_p = model.log_likelihood(x).double()  # exact, nats per image of the 17-level data
    bpd = -log_p / (64 * math.log(2))
    assert res["bits_per_dim"] == pytest.approx(float(bpd.mean()), rel=1e-6)
    assert res["bits_per_dim_se"] == pytest.approx(float(bpd.std() / math.sqrt(12)), rel=1e-6)
    # the discrete probabilities of 17 levels: at most log2(17) bits/dim more than a perfect model could...
    assert 0 < res["bits_per_dim"] and float(log_p.max()) < 0


def test_vae_iwae_bounds_its_elbo_and_takes_k_from_probes(runs, tmp_path):
    a = json.loads(invoke("eval", runs / "vae", "--metrics", "nll", "--n", 16, "--probes", 50, "--json",
                          tmp_path / "i.json") and (tmp_path / "i.json").read_text())
    b = json.loads(invoke("eval", runs / "vae", "--metrics", "nll", "--n", 16, "--method", "elbo", "--json",
                          tmp_path / "e.json") and (tmp_path / "e.json").read_text())
    assert "k=50" in a["settings"]["nll"]["method"] and "ELBO" in b["settings"]["nll"]["method"]
    assert a["results"]["bits_per_dim"] <= b["results"]["bits_per_dim"] + 1e-9  # IWAE_k is the tighter bound


def test_a_baseline_run_resumes(runs, tmp_path):
    import shutil

    run = tmp_path / "vae"
    shutil.copytree(runs / "vae", run)
    invoke("train", "--out", run, "--resume", "--steps", 2)
    assert (run / "ckpt-4").is_dir()
    assert load_run(run).config.family == "vae"


def test_gan_trains_on_vector_data(tmp_path):
    invoke("train", "toy2d", "--out", tmp_path / "g", "--steps", 2, *FAST, "--set", "family=gan",
           "--set", "model.options={latent_dim: 4, width: 16, d_width: 16}")
    model = load_run(tmp_path / "g").model
    assert model.sample(5, generator=torch.Generator().manual_seed(0)).shape == (5, 2)


def test_bad_requests_one_clear_message_each(runs, tmp_path):
    assert "a GAN defines no likelihood" in refused("eval", runs / "gan", "--metrics", "nll", "--n", 4)
    assert "--steps set(s) a diffusion sampler; a vae run draws with its own: drop them" in refused(
        "sample", runs / "vae", "--steps", 10, "--out", tmp_path / "x.png")
    assert "guidance" in refused("eval", runs / "vae", "--guidance", 2, "--n", 4)
    assert "a PixelCNN's likelihood is exact" in refused("eval", runs / "pixelcnn", "--metrics", "nll",
                                                          "--method", "ode", "--n", 4)
    assert "--method ode is a diffusion likelihood" in refused("eval", runs / "vae", "--metrics", "nll",
                                                                "--method", "ode", "--n", 4)
    assert "unknown family 'vea'; valid families are: diffusion, vae, gan, pixelcnn" in refused(
        "train", "digits", "--out", tmp_path / "f", "--steps", 1, "--set", "family=vea")
    assert "has no option 'widht'" in refused("train", "digits-vae", "--out", tmp_path / "w", "--steps", 1,
                                               "--set", "model.options.widht=4")
    # resized digits are not on 17 levels: treated as continuous, which a PixelCNN cannot model
    assert "needs the data's number of levels" in refused("train", "digits-pixelcnn", "--out", tmp_path / "p",
                                                           "--steps", 1, "--set", "data.options.size=16")
    assert not (tmp_path / "p").exists() and not (tmp_path / "f").exists()  # refusals leave nothing
