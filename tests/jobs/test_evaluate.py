"""`difflab eval`: a tiny digits run scored end to end, checked against independent computations."""

import json
import re
from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from difflab.cli.main import app
from difflab.config.factory import held_out_config
from difflab.config.schema import DataConfig
from difflab.data.digits import load_digits
from difflab.jobs import evaluate as evaluate_job
from difflab.jobs.evaluate import StageProgress, evaluate_folder_pair, sample_seeds
from difflab.jobs.generate import generate
from difflab.jobs.runs import load_run
from difflab.jobs.train import run_train
from difflab.metrics import (
    evaluate,
    frechet_distance,
    load_digit_classifier,
    memorization_check,
    resolve_metrics,
    sw2_ratio,
)
from difflab.utils.errors import DifflabError

runner = CliRunner()
TINY_UNET = "model.options={base_channels: 8, channel_mult: [1], num_res_blocks: 1, attention_resolutions: [], num_heads: 1}"
TINY = [TINY_UNET, "train.batch_size=32", "train.sample_every=0", "train.ckpt_every=3", "train.warmup_steps=1"]
SETTINGS = {"run", "checkpoint", "sampler", "schedule", "steps", "nfe", "n", "seed", "guidance", "batch_size"}
DIGIT_RESULTS = {"fdd", "precision", "recall", "class_coverage", "mean_confidence", "memorization_ratio",
                 "memorized_fraction", "n_fake", "n_real"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "run"
    run_train("digits", out, steps=3, overrides=TINY)
    return out


def _eval(args, path):
    r = runner.invoke(app, ["eval", *args, "--json", str(path)])
    assert r.exit_code == 0, r.output
    return json.loads(path.read_text())


def test_run_eval_json_reproducible_and_batch_size_free(run_dir, tmp_path):
    args = [str(run_dir), "--n", "40", "--steps", "2"]
    a = _eval([*args, "--batch-size", "40"], tmp_path / "a.json")
    assert SETTINGS <= set(a["settings"]) and DIGIT_RESULTS <= set(a["results"])
    assert a["settings"]["nfe"] == 2 and a["settings"]["n"] == 40 and a["settings"]["sampler"] == "unipc"
    assert a["results"]["n_fake"] == 40 and a["results"]["n_real"] == 1437
    assert all(np.isfinite(v) for v in a["results"].values())
    assert a == _eval([*args, "--batch-size", "40"], tmp_path / "b.json")  # same seed: identical numbers
    # batches 16, 16, 8: the same samples up to float32 rounding (the network's kernels depend on the batch size)
    c = _eval([*args, "--batch-size", "16"], tmp_path / "c.json")
    assert c["results"] == pytest.approx(a["results"], rel=1e-6, abs=1e-9)
    d = _eval([*args, "--batch-size", "40", "--seed", "1"], tmp_path / "d.json")
    assert d["results"]["fdd"] != a["results"]["fdd"]


class ManualClock:
    """A time source that moves only when told (no wall-clock dependence)."""

    def __init__(self, step: float = 0.0):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_progress_reports_a_true_rate_per_stage(capsys):
    """Each stage's rate counts from that stage's own start (metrics.evaluate reports done = 0 when a stage
    starts): 20 samples in 4 s, then 1437 items in 10 s."""
    clock = ManualClock()
    with StageProgress({"fake": 20, "real": 1437}, clock=clock) as bar:
        bar("fake", 0)
        clock.now = 1.0
        bar("fake", 10)
        clock.now = 4.0
        bar("fake", 20)
        bar("real", 0)  # the reference stage starts at t = 4
        clock.now = 14.0
        bar("real", 1437)
    lines = capsys.readouterr().err.splitlines()
    assert "sampling 20/20 (100%) 5 img/s elapsed 0:04 eta 0:00" in lines, lines
    assert "reference 1437/1437 (100%) 144 img/s elapsed 0:10 eta 0:00" in lines, lines


def test_eval_shows_a_progress_line_per_stage(run_dir, monkeypatch):
    """Off a terminal: plain progress lines per stage with a rate (the old bar stayed at '?/s'); a clock that
    ticks 1 us per reading makes the output independent of the machine's speed and load."""
    monkeypatch.setattr(evaluate_job, "StageProgress", partial(StageProgress, clock=ManualClock(1e-6)))
    r = runner.invoke(app, ["eval", str(run_dir), "--n", "20", "--steps", "2", "--batch-size", "10"])
    assert r.exit_code == 0, r.output
    number = r"[0-9.]+(e\+[0-9]+)?"
    assert re.search(rf"sampling 20/20 \(100%\) {number} img/s elapsed 0:00 eta 0:00", r.output), r.output
    assert re.search(rf"reference 1437/1437 \(100%\) {number} img/s elapsed 0:00 eta 0:00", r.output), r.output


def test_run_eval_matches_independent_computation(run_dir, tmp_path):
    """FDD against the training split and the memorization ratio against the test split, recomputed here."""
    got = _eval([str(run_dir), "--n", "24", "--steps", "2", "--batch-size", "10"], tmp_path / "e.json")["results"]
    run = load_run(run_dir)
    x = generate(run.model, run.meta, 24, sampler="unipc", steps=2, schedule="uniform", seed=sample_seeds(0, 0, 24)).x
    clf = load_digit_classifier()
    f_fake, f_train, f_test = (clf.features(v).double() for v in (x.clamp(-1, 1), load_digits("train")[0],
                                                                  load_digits("test")[0]))
    fdd = frechet_distance(f_fake.mean(0), f_fake.T.cov(), f_train.mean(0), f_train.T.cov())
    assert got["fdd"] == pytest.approx(fdd, rel=1e-4)
    ratio = memorization_check(f_fake, f_train, f_test).ratio
    assert got["memorization_ratio"] == pytest.approx(ratio, rel=1e-5)


def _write_pngs(folder, images):
    folder.mkdir(parents=True)
    u8 = ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    for i, im in enumerate(u8):
        Image.fromarray(im[0] if im.shape[0] == 1 else im.transpose(1, 2, 0)).save(folder / f"{i:03d}.png")
    return folder


def test_folder_eval(tmp_path):
    x, _ = load_digits("test")
    a = _write_pngs(tmp_path / "a", x[:60])
    same = _write_pngs(tmp_path / "same", x[:60])
    other = _write_pngs(tmp_path / "other", -x[60:120])  # inverted digits: far from the real ones
    r = _eval(["--real", str(a), "--fake", str(same)], tmp_path / "s.json")
    assert r["settings"]["data"] == "digits" and r["results"]["n_fake"] == 60
    # singular covariances (some post-ReLU features are always 0) get eps * I on both sides: 0 for identical sets
    assert abs(r["results"]["fdd"]) < 1e-8
    assert r["results"]["precision"] == r["results"]["recall"] == 1.0
    d = _eval(["--real", str(a), "--fake", str(other), "--metrics", "fdd"], tmp_path / "d.json")["results"]
    assert d["fdd"] > 10.0 and set(d) == {"fdd", "n_fake", "n_real"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("folders")
    x8, x16 = load_digits("test")[0][:4], load_digits("test", size=16)[0][:4]
    return {
        "grey8": _write_pngs(root / "grey8", x8),
        "grey16": _write_pngs(root / "grey16", x16),
        "rgb8": _write_pngs(root / "rgb8", x8.expand(-1, 3, -1, -1)),
        "one": _write_pngs(root / "one", x8[:1]),
    }


@pytest.mark.parametrize(
    "args, message",
    [
        (["{run}", "--real", "{grey8}", "--fake", "{grey8}"], "either a RUN folder or both --real"),
        ([], "either a RUN folder or both --real"),
        (["--real", "{grey8}"], "needs both --real DIR and --fake DIR"),
        (["--real", "{grey8}", "--fake", "{grey16}"], "images of the same size and mode"),
        (["--real", "{grey8}", "--fake", "{rgb8}"], "images of the same size and mode"),
        (["--real", "{one}", "--fake", "{one}"], "needs at least 2 samples"),
        (["--real", "{rgb8}", "--fake", "{rgb8}", "--metrics", "fid", "--inception", "{tmp}/none.pth"], "Inception"),
        (["--real", "{grey8}", "--fake", "{grey8}", "--metrics", "fdd,fdx"], "valid metrics are: auto, class_coverage"),
        (["--real", "{grey8}", "--fake", "{grey8}", "--metrics", "memorization"], "evaluate a run"),
        (["--real", "{grey8}", "--fake", "{grey8}", "--n", "5"], "--n only apply to a RUN"),
        (["{run}", "--n", "8", "--metrics", "label_accuracy"], "evaluate a class-conditional run"),
        (["{run}", "--n", "8", "--seed", "-1"], "seed must be an integer of at least 0; got -1"),
        (["{tmp}/no-run"], "does not exist"),
        (["{run}", "--n", "8", "--device", "tpu"], "unknown device 'tpu'"),
        (["{run}", "--n", "8", "--metrics", "fdd", "--inception", "{tmp}/none.pt"], "no Inception weights file at"),
        (["{run}", "--n", "8", "--json", "{tmp}"], "is a folder; give a file name"),
        (["{run}", "--n", "8", "--option", "eta"], "--option 'eta' must look like KEY=VALUE"),
        (["{run}", "--n", "8", "--sampler", "ddim", "--option", "etaa=1"], "etaa"),
        (["{run}", "--n", "8", "--schedule-option", "rhoo=3"], "rhoo"),
        (["--real", "{grey8}", "--fake", "{grey8}", "--option", "eta=1"], "--option only apply to a RUN"),
    ],
)
def test_bad_input_gets_one_message(args, message, run_dir, folders, tmp_path):
    paths = {**folders, "run": run_dir, "tmp": tmp_path}
    r = runner.invoke(app, ["eval", *(a.format(**paths) for a in args)])
    text = " ".join(r.output.split())  # undo rich's line wrapping
    assert r.exit_code == 2 and message in text, r.output
    assert r.output.count("error:") == 1 and "Traceback" not in r.output


def test_sampler_and_grid_options_reach_the_samples(run_dir, tmp_path):
    """--option / --schedule-option sample as `difflab sample` does: ddim's eta = 1 (DDPM-like noise) draws other
    samples than eta = 0, both recorded in the settings; the run's own sample.options are the base."""
    args = [str(run_dir), "--n", "16", "--steps", "3", "--metrics", "fdd", "--sampler", "ddim"]
    base = _eval(args, tmp_path / "a.json")
    eta0 = _eval([*args, "--option", "eta=0"], tmp_path / "b.json")
    eta1 = _eval([*args, "--option", "eta=1", "--schedule", "karras", "--schedule-option", "rho=3"], tmp_path / "c.json")
    assert base["settings"]["options"] == {} and eta0["settings"]["options"] == {"eta": 0}
    assert eta0["results"] == base["results"]  # eta = 0 is ddim's default
    assert eta1["settings"]["options"] == {"eta": 1} and eta1["settings"]["schedule_options"] == {"rho": 3}
    assert eta1["results"]["fdd"] != eta0["results"]["fdd"]


def test_eval_paths_expand_the_home_folder(run_dir, folders, tmp_path, monkeypatch):
    """`~` in RUN, --real, --fake and --json is the home folder (the shell leaves `--json=~/x` alone)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "run").symlink_to(run_dir)
    (tmp_path / "grey8").symlink_to(folders["grey8"])
    for args in (["~/run", "--n", "8", "--steps", "2", "--metrics", "fdd"], ["--real", "~/grey8", "--fake", "~/grey8"]):
        (tmp_path / "out.json").unlink(missing_ok=True)
        r = runner.invoke(app, ["eval", *args, "--json", "~/out.json"])
        assert r.exit_code == 0 and (tmp_path / "out.json").is_file(), r.output


def test_sw2_of_an_image_run(run_dir, tmp_path):
    """sw2 on image data: the samples flattened, with the matched floor (crashed when only vectors kept them)."""
    res = _eval([str(run_dir), "--n", "12", "--steps", "2", "--metrics", "sw2"], tmp_path / "s.json")["results"]
    assert set(res) == {"sw2", "sw2_matched", "sw2_floor", "sw2_ratio", "n_fake", "n_real"}
    assert res["sw2_ratio"] == pytest.approx(res["sw2_matched"] / res["sw2_floor"]) and res["sw2_floor"] > 0
    assert res["sw2_ratio"] > 1.5  # 3 training steps: far from the digits


class RGBExtractor:
    """A fixed random feature map with a classifier head on 3x8x8 images (no Inception weights needed)."""

    name, num_features, num_classes = "rgb", 6, 4

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.w, self.head = torch.randn(192, 6, generator=g) / 14, torch.randn(6, 4, generator=g)

    def features(self, images):
        return torch.tanh(images.flatten(1).float() @ self.w)

    def logits(self, images):
        return self.features(images) @ self.head


def test_inception_score_splits_on_a_small_rgb_folder(folders, tmp_path):
    r = runner.invoke(app, ["eval", "--real", str(folders["rgb8"]), "--fake", str(folders["rgb8"])])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "is_splits=10 needs at least 10 samples, got 4" in text and "--is-splits" in text
    r = runner.invoke(app, ["eval", "--real", str(folders["rgb8"]), "--fake", str(folders["rgb8"]), "--is-splits", "0"])
    assert r.exit_code == 2 and "is_splits must be an integer of at least 1; got 0" in " ".join(r.output.split())
    res = evaluate_folder_pair(folders["rgb8"], folders["rgb8"], metrics="is", is_splits=2,
                               inception=RGBExtractor()).results
    assert 1.0 <= res["is_mean"] <= RGBExtractor.num_classes and res["n_fake"] == 4


def test_metric_choice_and_held_out_split():
    assert resolve_metrics("auto", "digits") == ["fdd", "class_coverage", "precision_recall", "memorization"]
    assert resolve_metrics("auto", "digits", ("real", "train", "labels"))[-1] == "label_accuracy"
    assert "memorization" not in resolve_metrics("auto", "digits", ("real",))  # two folders: no training set
    assert resolve_metrics("auto", "vectors") == ["sw2", "mmd"]
    assert resolve_metrics("pr, coverage,confidence,fdd", "images") == ["precision_recall", "class_coverage", "fdd"]
    with pytest.raises(DifflabError, match="empty"):
        resolve_metrics(" , ", "digits")
    x = torch.zeros(4, 2)
    with pytest.raises(DifflabError, match="only used by the memorization check"):
        evaluate(x, x, "sw2", heldout=x)
    digits = DataConfig("digits", {"split": "train", "size": 16})
    assert held_out_config(digits).options == {"split": "test", "size": 16}
    subset = DataConfig("digits", {"split": "train", "first": 10, "repeat": 100})
    assert held_out_config(subset).options == {"split": "test"}  # the whole test split, not its first 10
    assert held_out_config(DataConfig("digits", {"split": "all"})) is None
    assert held_out_config(DataConfig("toy2d", {"name": "moons"})) is None
    # torch's CPU generator keeps 32 bits of a seed: the seeds of two evaluations must differ there
    a, b = sample_seeds(0, 0, 5000), sample_seeds(1, 0, 5000)
    assert len(set(a)) == 5000 and not set(a) & set(b) and max(a + b) < 2**32
    assert sample_seeds(0, 4000, 1000) == a[4000:]


def test_vector_run_sw2_floor_and_no_held_out_split(tmp_path):
    run = tmp_path / "toy"
    run_train("toy2d", run, steps=5, overrides=["model.options={hidden_dim: 16, num_blocks: 1}", "train.batch_size=32",
                                                "data.options={name: moons, n: 600}", "train.sample_every=0"])
    r = runner.invoke(app, ["eval", str(run), "--n", "100", "--steps", "2", "--metrics", "auto,memorization",
                            "--json", str(tmp_path / "t.json")])
    assert r.exit_code == 0, r.output
    assert "no held-out split exists" in " ".join(r.output.split())
    got = json.loads((tmp_path / "t.json").read_text())
    res = got["results"]
    assert got["settings"]["metrics"] == ["sw2", "mmd"] and got["settings"]["heldout"] is None
    assert res["n_real"] == 600 and res["sw2_ratio"] == pytest.approx(res["sw2_matched"] / res["sw2_floor"])
    assert res["sw2_ratio"] > 1.5  # 5 training steps are far from the data


def test_sw2_floor_is_the_exact_sample_distance(gen):
    """At matched sizes, fresh exact samples sit at ratio ~1 to the floor; a shifted distribution well above."""
    reference = torch.randn(4000, 2, generator=gen, dtype=torch.float64)
    ratios = []
    for k in range(4):
        fresh = torch.randn(500, 2, generator=gen, dtype=torch.float64)
        r = sw2_ratio(fresh, reference, 128, seed=k)
        ratios.append(r.ratio)
    assert r.m == 500 and 0.85 < sum(ratios) / 4 < 1.15
    assert sw2_ratio(torch.randn(500, 2, generator=gen, dtype=torch.float64) + 0.5, reference, 128).ratio > 3
    assert sw2_ratio(reference[:100], reference[:300], 128, seed=0).m == 100
    assert sw2_ratio(reference[:500], reference[:300], 128, seed=0).m == 150  # small reference: half
