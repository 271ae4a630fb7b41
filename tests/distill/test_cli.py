"""`difflab distill`: a tiny toy2d teacher, distilled by each method, sampled and scored like any run."""

from __future__ import annotations

import shutil

import pytest
import yaml
from typer.testing import CliRunner

from difflab.cli.main import app

runner = CliRunner()
TINY = ["--set", "model.options={hidden_dim: 16, num_blocks: 1}", "--set", "data.options={name: 8gaussians, n: 256}",
        "--set", "model.conditioning=class", "--set", "train.batch_size=32", "--set", "train.sample_every=0",
        "--set", "train.log_every=1", "--set", "sample.steps=2", "--set", "sample.n=8"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A class-conditional toy2d run trained for 5 steps."""
    run = tmp_path_factory.mktemp("distill") / "teacher"
    r = runner.invoke(app, ["train", "toy2d", "--out", str(run), "--steps", "5", *TINY])
    assert r.exit_code == 0, r.output
    return run


def _config(run):
    ckpt = sorted(run.glob("ckpt-*"), key=lambda p: int(p.name.split("-")[1]))[-1]
    return yaml.safe_load((ckpt / "config.yaml").read_text())


def sample_eval_resume(out, tmp_path, steps, resumed_at: int) -> None:
    """A distilled run is used like any run: `sample` at each step count (NFE = steps), `eval`, and
    `distill --resume` for one more step (which says it resumed and reached step `resumed_at`)."""
    for n in steps:
        r = runner.invoke(app, ["sample", str(out), "--steps", n, "--n", "8", "--class", "3",
                                "--out", str(tmp_path / f"s{n}.png")])
        assert r.exit_code == 0 and f"8 samples, {n} denoiser evaluation{'' if n == '1' else 's'}" in r.output, r.output
    r = runner.invoke(app, ["eval", str(out), "--n", "64", "--json", str(tmp_path / "e.json")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["distill", "--out", str(out), "--resume", "--steps", "1"])
    assert r.exit_code == 0 and "resumed from" in r.output and f"at step {resumed_at}" in r.output, r.output


def test_progressive_distill_sample_eval_resume(teacher, tmp_path):
    out = tmp_path / "pd"
    r = runner.invoke(app, ["distill", str(teacher), "--method", "progressive", "--out", str(out), "--steps", "2",
                            "--set", "distill.options.start_steps=4", "--set", "distill.options.phase_steps=1"])
    assert r.exit_code == 0 and "progressive distillation stopped in phase" not in r.output, r.output  # schedule done
    cfg = _config(out)
    assert cfg["distill"]["method"] == "progressive" and cfg["distill"]["teacher"] == str(teacher.resolve())
    assert (cfg["sample"]["sampler"], cfg["sample"]["schedule"], cfg["sample"]["steps"]) == ("ddim", "uniform", 1)
    assert cfg["model"] == _config(teacher)["model"]  # the teacher's network: its weights start the student
    sample_eval_resume(out, tmp_path, ("1", "2", "4"), resumed_at=3)
    short = tmp_path / "short"  # a budget that ends inside the schedule says so
    r = runner.invoke(app, ["distill", str(teacher), "--method", "progressive", "--out", str(short), "--steps", "1",
                            "--set", "distill.options.start_steps=4", "--set", "distill.options.phase_steps=1"])
    assert r.exit_code == 0 and "stopped in phase 1 of 2 (a 2-step student, 1 of 2 steps)" in r.output, r.output


def test_reflow_distill_caches_pairs_and_samples_in_one_step(teacher, tmp_path):
    out = tmp_path / "rf"
    r = runner.invoke(app, ["distill", str(teacher), "--method", "reflow", "--out", str(out), "--steps", "2",
                            "--set", "distill.options.pairs=64", "--set", "distill.options.pair_steps=2"])
    assert r.exit_code == 0 and "drawing 64 pairs" in r.output, r.output
    assert sorted(p.name for p in (out / "pairs").iterdir()) == ["labels.npy", "pairs.json", "x.npy", "z.npy"]
    cfg = _config(out)
    assert (cfg["process"]["name"], cfg["model"]["parameterization"], cfg["sample"]["sampler"]) == \
        ("flow", "velocity", "euler")
    r = runner.invoke(app, ["sample", str(out), "--steps", "1", "--n", "8", "--class", "1",
                            "--out", str(tmp_path / "r.png")])
    assert r.exit_code == 0 and "1 denoiser evaluation)" in r.output, r.output
    r = runner.invoke(app, ["distill", "--out", str(out), "--resume", "--steps", "1"])
    assert r.exit_code == 0 and "read 64 cached pairs" in r.output, r.output


def test_distill_messages(teacher, tmp_path):
    def fails(args, *needles):
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and "Traceback" not in r.output, r.output
        for needle in needles:
            assert needle in r.output, r.output

    fails(["distill", str(teacher), "--method", "nope", "--out", str(tmp_path / "a")], "distill method", "progressive")
    fails(["distill", str(teacher), "--method", "progressive", "--out", str(tmp_path / "b"),
           "--set", "distill.options.halvings=3"], "has no option 'halvings'", "start_steps")
    fails(["distill", str(tmp_path / "none"), "--method", "reflow", "--out", str(tmp_path / "c")], "does not exist")
    fails(["distill", "--out", str(tmp_path / "d")], "name the teacher RUN and --method")
    assert not any((tmp_path / n).exists() for n in "abcd")  # a refusal leaves nothing behind
    # a missing teacher on resume: one message naming the recorded path
    copy = tmp_path / "teacher-copy"
    shutil.copytree(teacher, copy)
    out = tmp_path / "e"
    r = runner.invoke(app, ["distill", str(copy), "--method", "progressive", "--out", str(out), "--steps", "1",
                            "--set", "distill.options.start_steps=2"])
    assert r.exit_code == 0, r.output
    shutil.rmtree(copy)
    fails(["distill", "--out", str(out), "--resume", "--steps", "1"], f"the teacher run {copy.resolve()}", "is missing")
    fails(["distill", str(teacher), "--method", "progressive", "--out", str(out)], "already holds a run", "--resume")
    fails(["distill", str(teacher), "--out", str(out), "--resume"], f"was distilled from {copy.resolve()}",
          "leave RUN out")


def test_the_users_set_wins_over_the_methods_changes(teacher):
    from difflab.jobs.distill import student_config

    base = _config(teacher)
    d = student_config(base, teacher, "reflow", ["sample.steps=4", "distill.options.sample_steps=3", "train.lr=5e-4"])
    assert (d["sample"]["sampler"], d["sample"]["steps"], d["train"]["lr"]) == ("euler", 4, 5e-4)
    assert d["distill"] == {"method": "reflow", "teacher": str(teacher), "options": {"sample_steps": 3},
                            "init": "teacher"}
    d = student_config(base, teacher, "reflow", ["distill.options.sample_steps=3"])
    assert d["sample"]["steps"] == 3 and d["train"]["max_minutes"] is None


def test_every_phase_student_is_kept_and_sampled_at_its_own_steps(teacher, tmp_path):
    """Students of 4, 2, 1 steps (phases of 2 optimizer steps): their phase-end checkpoints survive keep_last=1,
    `sample --steps 4` loads the 4-step student (= `--checkpoint 2`), and a missing student is named."""
    import numpy as np

    out = tmp_path / "pd"
    r = runner.invoke(app, ["distill", str(teacher), "--method", "progressive", "--out", str(out),
                            "--set", "distill.options.start_steps=8", "--set", "distill.options.phase_steps=[2, 2, 2]",
                            "--set", "train.keep_last=1", "--set", "train.ckpt_every=100"])
    assert r.exit_code == 0, r.output
    assert sorted(int(p.name.split("-")[1]) for p in out.glob("ckpt-*")) == [2, 4, 6]

    def draw(name, *args):
        res = runner.invoke(app, ["sample", str(out), "--n", "8", "--class", "3", "--no-grid",
                                  "--save-array", str(tmp_path / f"{name}.npy"), *args])
        assert res.exit_code == 0, res.output
        return np.load(tmp_path / f"{name}.npy"), " ".join(res.output.split())

    auto, said = draw("auto", "--steps", "4")
    assert "using ckpt-2, the 4-step student of this run" in said
    chosen, said_chosen = draw("chosen", "--steps", "4", "--checkpoint", "2")
    assert np.array_equal(auto, chosen) and "note:" not in said_chosen
    newest, _ = draw("newest", "--steps", "4", "--checkpoint", "6")
    assert not np.array_equal(auto, newest)
    _, said_one = draw("one", "--steps", "1")
    assert "note:" not in said_one  # the 1-step student is the newest checkpoint
    shutil.rmtree(out / "ckpt-4")
    _, said_two = draw("two", "--steps", "2")
    assert "the 2-step student of this run would be ckpt-4" in said_two and "sampling ckpt-6 with 2 steps" in said_two
