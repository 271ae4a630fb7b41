"""Nothing lost by ordinary use: existing runs refused untouched, resume budgets, damaged run folders."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from difflab.cli.main import app
from difflab.jobs.train import budget
from difflab.train import TrainConfig, list_checkpoints, read_log

runner = CliRunner()
TINY = ["--set", "model.options={hidden_dim: 16, num_blocks: 1}", "--set", "data.options={name: moons, n: 256}",
        "--set", "train.batch_size=32", "--set", "train.log_every=1", "--set", "train.sample_every=0",
        "--set", "train.ckpt_every=2", "--set", "train.keep_last=2", "--set", "sample.steps=2"]


def _train(run, *args):
    return runner.invoke(app, ["train", "toy2d", "--out", str(run), *TINY, *args])


def _resume(run, *args):
    return runner.invoke(app, ["train", "--out", str(run), "--resume", *args])


def _sample(run, tmp_path):
    return runner.invoke(app, ["sample", str(run), "--n", "8", "--steps", "2", "--out", str(tmp_path / "s.png")])


def _said(result) -> str:
    """The output with line wrapping undone (wrapping may split a long path anywhere)."""
    return "".join(result.output.split())


def _has(result, *phrases: str) -> bool:
    return all("".join(p.split()) in _said(result) for p in phrases)


def _snapshot(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 4-step toy run with ckpt-2 and ckpt-4, copied fresh into each test that damages it."""
    run = tmp_path_factory.mktemp("run") / "run"
    r = _train(run, "--steps", "4")
    assert r.exit_code == 0, r.output
    return run


@pytest.fixture()
def run(trained, tmp_path):
    import shutil

    return shutil.copytree(trained, tmp_path / "run", ignore=shutil.ignore_patterns(".lock"))


def test_a_fresh_run_into_an_existing_one_is_refused_untouched(run, tmp_path):
    before = _snapshot(run)
    r = _train(run, "--steps", "2")
    assert r.exit_code == 2 and _has(r, "add --resume to continue it, or choose another --out"), r.output
    assert "Traceback" not in r.output and "resume=True" not in r.output
    assert _snapshot(run) == before  # run.json, checkpoints and logs byte for byte
    (tmp_path / "file").write_text("x")
    r = _train(tmp_path / "file", "--steps", "2")
    assert r.exit_code == 2 and _has(r, "is a file, not a run folder")
    r = _resume(tmp_path / "nothing")
    assert r.exit_code == 2 and _has(r, "no checkpoint to resume from") and not (tmp_path / "nothing").exists()


def test_resume_budgets_mean_this_much_more(run):
    r = _resume(run)  # the run used its whole budget (4 steps): said so, with the flags to give
    assert r.exit_code == 2 and _has(r, "used its whole budget") and _has(r, "--steps N or --minutes M")
    r = _resume(run, "--steps", "3")
    assert r.exit_code == 0, r.output
    assert [p.name for p in list_checkpoints(run)] == ["ckpt-6", "ckpt-7"]
    assert [rec["step"] for rec in read_log(run / "log.jsonl")] == list(range(1, 8))


def test_budget_rule():
    cfg = TrainConfig(max_steps=100, max_minutes=2.0)
    assert budget(cfg, None, 5.0, None).max_minutes == 5.0 and budget(cfg, None, 5.0, None).max_steps == 100
    interrupted = {"step": 10, "elapsed": 30.0}  # Ctrl-C after 30 s of a 2-minute budget: the rest remains
    assert budget(cfg, interrupted, None, None) == cfg
    finished = {"step": 40, "elapsed": 120.5}
    more = budget(cfg, finished, 1.5, None)
    assert (more.max_steps, more.max_minutes) == (None, pytest.approx(120.5 / 60 + 1.5, rel=1e-12))
    more = budget(cfg, finished, None, 7)
    assert (more.max_steps, more.max_minutes) == (47, None)
    with pytest.raises(ValueError, match="used its whole budget"):
        budget(cfg, finished, None, None)
    with pytest.raises(ValueError, match="--steps must be at least 1"):
        budget(cfg, finished, None, 0)


def test_damaged_weights_fall_back_and_sampling_never_reads_the_optimizer(run, tmp_path):
    (run / "ckpt-4" / "trainer.pt").write_bytes(b"garbage")  # a damaged optimizer state: sampling is unaffected
    r = _sample(run, tmp_path)
    assert r.exit_code == 0 and "skipped" not in r.output, r.output
    ema = run / "ckpt-4" / "ema.safetensors"
    ema.write_bytes(ema.read_bytes()[:-40])  # truncated
    r = _sample(run, tmp_path)
    assert r.exit_code == 0, r.output
    assert _has(r, f"skipped ckpt-4: {ema} is damaged") and _has(r, "using ckpt-2")
    r = _resume(run, "--steps", "1")
    assert r.exit_code == 0, r.output
    assert _has(r, f"skipped ckpt-4: {ema} is damaged") and _has(r, "newest intact checkpoint, ckpt-2")
    assert (run / "ckpt-4.damaged" / "trainer.pt").read_bytes() == b"garbage"  # set aside, not deleted
    assert [p.name for p in list_checkpoints(run)] == ["ckpt-2", "ckpt-3"]
    assert [rec["step"] for rec in read_log(run / "log.jsonl")] == [1, 2, 3]


@pytest.mark.parametrize("damage", ["config.yaml", "state.json", "manifest.json"])
def test_every_checkpoint_damaged_is_one_message_naming_the_file(run, tmp_path, damage):
    for ckpt in list_checkpoints(run):
        (ckpt / damage).write_text("{garbled: [")
    evaluated = runner.invoke(app, ["eval", str(run), "--n", "16", "--steps", "2", "--metrics", "sw2"])
    for r in (_sample(run, tmp_path), evaluated, _resume(run, "--steps", "1")):
        assert r.exit_code == 2 and _has(r, f"{damage} is damaged") and "Traceback" not in r.output, r.output


def test_damaged_run_json_and_log(run, tmp_path):
    (run / "run.json").write_text('{"data_shape": [2')
    r = _sample(run, tmp_path)
    assert r.exit_code == 2 and _has(r, "run.json is damaged") and "Traceback" not in r.output
    with open(run / "log.jsonl", "a") as f:
        f.write('{"step": 5, "lo')  # a half-written last record
    r = _resume(run, "--steps", "1")
    assert r.exit_code == 0, r.output
    assert _has(r, "run.json is damaged") and _has(r, "log.jsonl is damaged")
    assert json.loads((run / "run.json").read_text())["data_shape"] == [2]
    assert (run / "log.jsonl.damaged").is_file() and os.path.getsize(run / "log.jsonl.damaged") > 0
    assert _sample(run, tmp_path).exit_code == 0


def test_every_job_checks_the_device_the_same_way(run):
    """fit-schedule (through jobs.runs.torch_device) refuses a device the machine lacks with the same message
    as sample, instead of failing inside torch."""
    import torch

    from difflab.jobs.runs import torch_device

    assert torch_device(None) == ("cuda" if torch.cuda.is_available() else "cpu") and torch_device("cpu") == "cpu"
    for device, message in [("gpu7", "unknown device 'gpu7'"), ("cuda:99", "cuda:99")]:
        r = runner.invoke(app, ["fit-schedule", str(run), "--steps", "2", "--device", device])
        assert r.exit_code == 2 and _has(r, message) and "Traceback" not in r.output, r.output


def test_a_refused_train_leaves_nothing_behind(run, tmp_path):
    """Every refusal after the run folder is locked: the folder it would create is absent afterwards (with
    the parents made for it), an existing run is byte for byte as it was, with no lock file added."""
    empty = tmp_path / "empty"
    empty.mkdir()
    refusals = [
        (["train", "toy2d", *TINY, "--set", "train.lrr=1"], "unknown config key train.lrr"),
        (["train", "toy2d", *TINY, "--minutes", "-1"], "--minutes must be a positive number"),
        (["train", "folder", "--set", f"data.options.root={empty}"], "no images found"),
        (["train", "toy2d", *TINY, "--set", "model.options={hidden_dim: 0}"], "hidden_dim"),
    ]
    for args, message in refusals:
        out = tmp_path / "new" / "deeper" / "run"
        r = runner.invoke(app, [*args, "--out", str(out)])
        assert r.exit_code == 2 and _has(r, message), r.output
        assert not (tmp_path / "new").exists(), args
    before = _snapshot(run)
    assert not (run / ".lock").exists()
    for r in (_resume(run), _resume(run, "--steps", "1", "--set", "model.options={hidden_dim: 48, num_blocks: 1}")):
        assert r.exit_code == 2 and ("used its whole budget" in r.output or "different architecture" in r.output)
        assert _snapshot(run) == before and not (run / ".lock").exists(), r.output
