"""Classifier guidance end to end: `difflab train-classifier`, load_run_classifier, `difflab sample --class K
--classifier-scale S`, the CFG-inside / classifier-outside chain against the exact Gaussian-mixture
classifier, and the pure-noise end of rectified flow (alpha(1) = 0)."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from difflab.analysis import ring_mixture
from difflab.cli.main import app
from difflab.config.factory import held_out_config
from difflab.config.schema import ClassifierConfig, DataConfig
from difflab.config.validate import from_dict
from difflab.data.datasets import ArrayData
from difflab.data.digits import load_digits
from difflab.guidance import ClassifierGuidance
from difflab.jobs.classifier import held_out, load_run_classifier
from difflab.jobs.generate import guidance_chain
from difflab.jobs.train import run_train
from difflab.metrics.noisy_accuracy import classifier_accuracy
from difflab.param.classifier import TimeClassifier
from difflab.process import VESDE, VPSDE, DiscreteVP, RectifiedFlow
from difflab.sampling import sample
from difflab.utils.errors import DifflabError

runner = CliRunner()
NET = "{base_channels: 16, channel_mult: [1, 2], num_res_blocks: 1, attention_resolutions: [], num_heads: 1}"
RUN_SET = [f"model.options={NET}", "train.batch_size=32", "train.log_every=1", "train.sample_every=0",
           "train.ckpt_every=0", "sample.steps=3", "sample.n=8"]
CLF_SET = ["--set", f"options={NET}", "--set", "train.batch_size=32", "--set", "train.lr=5e-3",
           "--set", "train.warmup_steps=0", "--set", "train.log_every=1", "--set", "train.ema=100"]
MIX = ring_mixture()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-step digits run (rectified flow, unconditional U-Net) with a 15-step classifier trained by the CLI
    (enough for its accuracy to differ between the t of the report)."""
    path = tmp_path_factory.mktemp("cg") / "run"
    run_train("digits", path, steps=2, overrides=RUN_SET)
    r = runner.invoke(app, ["train-classifier", str(path), "--steps", "15", *CLF_SET])
    assert r.exit_code == 0, r.output
    return path


def error_line(r) -> str:
    """The CLI's one-line error, unwrapped."""
    assert r.exit_code == 2, r.output
    assert r.output.count("error:") == 1 and "Traceback" not in r.output
    return " ".join(r.output.split())


def test_train_classifier_writes_checkpoint_and_held_out_accuracy(run):
    """accuracy.json holds the EMA classifier's top-1 accuracy on digits' test split, recomputed here from
    the closed form of rectified flow, x_t = (1 - t) x0 + t eps, with the job's noise (seed 0)."""
    ckpt = run / "classifier" / "ckpt-15"
    assert all((ckpt / f).is_file() for f in ("model.safetensors", "ema.safetensors", "config.yaml"))
    report = json.loads((run / "classifier" / "accuracy.json").read_text())
    assert (report["step"], report["split"], report["items"]) == (15, "test split", 360)
    clf = load_run_classifier(run)
    x0, y = load_digits("test")
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    for t in (0.0, 0.25, 0.5, 0.75):
        tt = torch.full((len(y),), t)
        acc = (clf((1 - t) * x0 + t * eps, tt).argmax(1) == y).double().mean().item()
        assert report["accuracy"][str(t)] == pytest.approx(acc, abs=1e-12)


class TemplateNet(torch.nn.Module):
    """logits = <x, class mean image> + c_noise * b: a fixed classifier that is right often at t = 0."""

    def __init__(self, x0, y):
        super().__init__()
        sums = torch.zeros(10, x0[0].numel()).index_add_(0, y, x0.flatten(1))  # (10, 64)
        self.templates = sums / torch.bincount(y, minlength=10)[:, None]
        self.b = torch.linspace(-1, 1, 10)

    def forward(self, x, c_noise):
        return x.flatten(1) @ self.templates.T + c_noise[:, None] * self.b  # (B, 10)


def test_classifier_accuracy_against_a_direct_computation():
    """classifier_accuracy equals one full-batch computation with rectified flow's closed form
    x_t = (1 - t) x0 + t eps (eps from the seed), whatever the batch size."""
    x0, y = load_digits("test")
    clf = TimeClassifier(TemplateNet(x0, y), RectifiedFlow(), time_scale=1.0)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(4))
    times = [0.0, 0.3, 0.6, 0.9]
    direct = {t: (clf((1 - t) * x0 + t * eps, torch.full((len(y),), t)).argmax(1) == y).double().mean().item()
              for t in times}
    assert direct[0.0] > 0.7 > direct[0.9]
    for batch_size in (7, 360):
        got = classifier_accuracy(clf, ArrayData(x0, y), times, seed=4, batch_size=batch_size)
        assert got == pytest.approx(direct, abs=1e-12)


def test_load_run_classifier_round_trips_the_weights(run):
    ckpt = run / "classifier" / "ckpt-15"
    for ema, file in ((True, "ema.safetensors"), (False, "model.safetensors")):
        clf = load_run_classifier(run, ema=ema)
        saved = load_file(str(ckpt / file))
        assert set(saved) == set(clf.state_dict())
        assert all(torch.equal(v, saved[k]) for k, v in clf.state_dict().items())
        assert not clf.training and not any(p.requires_grad for p in clf.parameters())
        assert isinstance(clf.process, RectifiedFlow) and clf.num_classes == 10
    ema_w, raw_w = load_run_classifier(run).state_dict(), load_run_classifier(run, ema=False).state_dict()
    assert any(not torch.equal(ema_w[k], raw_w[k]) for k in ema_w)


def test_a_damaged_optimizer_state_does_not_stop_guided_sampling(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "classifier" / "ckpt-15" / "trainer.pt").write_bytes(b"garbage")
    clf = load_run_classifier(copy)
    saved = load_file(str(copy / "classifier" / "ckpt-15" / "ema.safetensors"))
    assert all(torch.equal(v, saved[k]) for k, v in clf.state_dict().items())


def test_resume_continues_the_step_count(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    r = runner.invoke(app, ["train-classifier", str(copy), "--steps", "17", *CLF_SET])
    assert "resume" in error_line(r)  # a fresh run over existing checkpoints is refused
    r = runner.invoke(app, ["train-classifier", str(copy), "--resume", "--steps", "17"])
    assert r.exit_code == 0, r.output
    steps = [rec["step"] for rec in map(json.loads, (copy / "classifier" / "log.jsonl").read_text().splitlines())]
    assert steps == list(range(1, 18)) and (copy / "classifier" / "ckpt-17").is_dir()
    assert json.loads((copy / "classifier" / "accuracy.json").read_text())["step"] == 17


def test_sample_with_classifier_guidance(run, tmp_path):
    """The flow grid starts at alpha = 0: the samples are finite, and the guidance changes them."""
    common = ["sample", str(run), "--n", "8", "--steps", "3", "--seed", "1"]
    r = runner.invoke(app, [*common, "--class", "3", "--classifier-scale", "2", "--out", str(tmp_path / "g.png"),
                            "--save-array", str(tmp_path / "g.npy")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "g.png").is_file()
    r = runner.invoke(app, [*common, "--out", str(tmp_path / "u.png"), "--save-array", str(tmp_path / "u.npy")])
    assert r.exit_code == 0, r.output
    guided, plain = np.load(tmp_path / "g.npy"), np.load(tmp_path / "u.npy")
    assert guided.shape == (8, 1, 8, 8) and np.isfinite(guided).all()
    assert not np.array_equal(guided, plain)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--classifier-scale", "2"], "needs the target class: add --class K (K in 0..9)"),
        (["--class", "12", "--classifier-scale", "2"], "class 12 is outside the classifier's classes 0..9"),
        (["--class", "3"], "this model is not class-conditional"),
        (["--guidance", "3"], "classifier-free guidance needs a conditional model"),
    ],
)
def test_bad_sampling_input_gets_one_message(run, tmp_path, args, message):
    r = runner.invoke(app, ["sample", str(run), "--n", "4", "--steps", "2", "--out", str(tmp_path / "s.png"), *args])
    assert message in error_line(r)


def test_bad_classifier_training_input_gets_one_message(run, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(run, bare, ignore=shutil.ignore_patterns("classifier"))
    r = runner.invoke(app, ["sample", str(bare), "--class", "3", "--classifier-scale", "2"])
    assert f"train one with `difflab train-classifier {bare}`" in error_line(r)
    r = runner.invoke(app, ["train-classifier", str(bare), "--set", "train.lrr=1"])
    assert "unknown config key train.lrr" in error_line(r)
    r = runner.invoke(app, ["train-classifier", str(bare), "--set", "options.image_size=16"])
    assert "['image_size'] are set from the run's data" in error_line(r)
    r = runner.invoke(app, ["train-classifier", str(tmp_path / "nothing")])
    assert "does not exist" in error_line(r)
    swiss = tmp_path / "swiss"
    run_train("toy2d", swiss, steps=1, overrides=["model.options={hidden_dim: 16, num_blocks: 1}",
                                                  "data.options={name: swissroll, n: 64}", "train.batch_size=32",
                                                  "train.sample_every=0"])
    r = runner.invoke(app, ["train-classifier", str(swiss)])
    assert "data set (toy2d) has no class labels" in error_line(r)


def test_classifier_schema_lives_in_config_and_shares_the_held_out_rule():
    """One held-out rule for every job: the classifier measures on the split eval's memorization check uses."""
    for data in (DataConfig("digits", {"split": "train", "size": 16}), DataConfig("digits", {"split": "all"})):
        held = held_out_config(data)
        assert held_out(data)[0] == (data if held is None else held)
    with pytest.raises(DifflabError, match="no condition dropout"):
        from_dict(ClassifierConfig, {"train": {"p_uncond": 0.1}})


# ---- the guidance chain against the exact mixture classifier -------------------------------------------

CASES = [(VPSDE(), "v"), (DiscreteVP(), "eps"), (VESDE(), "x0"), (RectifiedFlow(), "velocity")]
IDS = [f"{p.name}-{param}" for p, param in CASES]


def exact_classifier(process):
    """log p(y | x_t) of the mixture, whose components are its classes: the Bayes classifier."""
    return lambda x, t: MIX.responsibilities(x, t, process).log()


def batch(seed=0, n=16):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=torch.float64) * 1.5
    t = torch.rand(n, generator=g, dtype=torch.float64) * 0.85 + 0.05
    return x, t, torch.randint(0, 8, (n,), generator=g)


@pytest.mark.parametrize(("process", "param"), CASES, ids=IDS)
def test_cfg_inside_classifier_outside_adds_the_weights(process, param):
    """With the exact classifier, grad log p(y|x_t) = -(eps_c - eps_u) / sigma, so CFG weight w followed by
    classifier scale s is CFG with weight w + s: eps~ = eps_u + (w + s)(eps_c - eps_u)."""
    x, t, y = batch()
    w, s = 2.0, 1.5
    D = MIX.denoiser(process, param)
    guided = guidance_chain(w, None, exact_classifier(process), s)(D).predict(x, t, {"class_labels": y})
    c, u = D.exact(x, t, {"class_labels": y}), D.exact(x, t, None)
    torch.testing.assert_close(guided.eps, u.eps + (w + s) * (c.eps - u.eps), rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(guided.x0, u.x0 + (w + s) * (c.x0 - u.x0), rtol=1e-6, atol=1e-8)


def test_labels_reach_only_the_classifier_of_an_unconditional_model():
    """labels_to_network=False: the network is called with no condition, and s = 1 gives p(x_t | y) (Bayes)."""
    process = VPSDE()
    D = MIX.denoiser(process, "eps")

    def unconditional(x, t, cond=None):
        assert cond is None
        return D(x, t)

    unconditional.parameterization, unconditional.process = "eps", process
    x, t, y = batch(seed=1)
    guide = guidance_chain(classifier=exact_classifier(process), classifier_scale=1.0, labels_to_network=False)
    guided = guide(unconditional).predict(x, t, {"class_labels": y})
    torch.testing.assert_close(guided.eps, D.exact(x, t, {"class_labels": y}).eps, rtol=1e-6, atol=1e-8)


def test_pure_noise_rows_are_unguided_and_the_rest_guided():
    """Rectified flow at t = 1 (alpha = 0): the x0 shift would be 0 / 0; ClassifierGuidance returns the
    unguided prediction for those rows and the guided one (computed on the informative rows alone, where the
    formula applies directly) for the others, in one mixed batch, finite everywhere."""
    process = RectifiedFlow()
    D = MIX.denoiser(process, "velocity")
    x, t, y = batch(seed=2, n=8)
    t[::2] = 1.0
    guided = ClassifierGuidance(D, exact_classifier(process), 2.0)
    out = guidance_chain(classifier=exact_classifier(process), classifier_scale=2.0)(D)(x, t, {"class_labels": y})
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[::2], D(x[::2], t[::2], {"class_labels": y[::2]}))
    torch.testing.assert_close(out[1::2], guided(x[1::2], t[1::2], {"class_labels": y[1::2]}))
    assert not torch.allclose(out[1::2], D(x[1::2], t[1::2], {"class_labels": y[1::2]}))


def test_classifier_guided_flow_sampling_hits_the_class():
    """Through difflab.sample on rectified flow's uniform grid, which starts at t = 1: the unconditional
    model guided by the exact classifier at s = 1 samples class 5 (its first step is unguided)."""
    process = RectifiedFlow()
    n = 400
    guide = guidance_chain(classifier=exact_classifier(process), classifier_scale=1.0)
    cond = {"class_labels": torch.full((n,), 5), "drop": torch.ones(n, dtype=torch.bool)}
    out = sample(MIX.denoiser(process, "velocity"), (n, 2), sampler="heun", steps=15, seed=0, cond=cond,
                 guidance=guide, dtype=torch.float64)
    assert float(out.times[0]) == 1.0 and torch.isfinite(out.x).all()
    comp = MIX.responsibilities(out.x, torch.zeros(n), process).argmax(1)
    assert float((comp == 5).double().mean()) > 0.98
