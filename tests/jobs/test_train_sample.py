"""End to end: train a tiny model from the CLI, sample it, resume it; clear messages for bad runs."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from difflab.cli.main import app

runner = CliRunner()
TINY = ["--set", "model.options={hidden_dim: 32, num_blocks: 1}", "--set", "data.options={name: moons, n: 512}",
        "--set", "train.batch_size=64", "--set", "train.log_every=5", "--set", "train.sample_every=0",
        "--set", "train.ckpt_every=10", "--set", "sample.steps=4"]


def test_train_sample_resume(tmp_path):
    run = tmp_path / "run"
    r = runner.invoke(app, ["train", "toy2d", "--out", str(run), "--steps", "10", *TINY])
    assert r.exit_code == 0, r.output
    assert (run / "ckpt-10" / "model.safetensors").is_file() and (run / "loss.png").is_file()
    r = runner.invoke(app, ["sample", str(run), "--n", "50", "--out", str(tmp_path / "s.png"),
                            "--save-array", str(tmp_path / "s.npy"), "--steps", "4"])
    assert r.exit_code == 0, r.output
    x = np.load(tmp_path / "s.npy")
    assert x.shape == (50, 2) and np.abs(x).max() > 1  # vectors are not clamped to the image box
    assert not (tmp_path / "s.labels.npy").exists()  # an unconditional run has no labels to save
    r = runner.invoke(app, ["train", "--out", str(run), "--resume", "--steps", "20"])
    assert r.exit_code == 0, r.output
    assert (run / "ckpt-20").is_dir()
    # a fresh run into a folder that has checkpoints is refused rather than overwritten
    r = runner.invoke(app, ["train", "toy2d", "--out", str(run), "--steps", "5", *TINY])
    assert r.exit_code == 2 and "resume" in r.output


def test_out_folder_named_like_the_preset(tmp_path, monkeypatch):
    # `train toy2d --out toy2d` in the current folder: the run folder must not hide the preset
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["train", "toy2d", "--out", "toy2d", "--steps", "2", *TINY])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "toy2d" / "ckpt-2" / "model.safetensors").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["sample", "/nonexistent/run"], "does not exist"),
        (["train", "digitz"], "unknown preset"),
        (["train", "digits", "--set", "train.lrr=1"], "unknown config key train.lrr"),
    ],
)
def test_bad_input_gets_one_message(args, message, tmp_path):
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and message in r.output.replace("\n", " ")
    assert "Traceback" not in r.output


def test_empty_image_folder_and_incompatible_resume(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = runner.invoke(app, ["train", "folder", "--set", f"data.options.root={empty}", "--out", str(tmp_path / "f")])
    assert r.exit_code == 2 and "no images found" in r.output.replace("\n", " ")
    run = tmp_path / "run"
    assert runner.invoke(app, ["train", "toy2d", "--out", str(run), "--steps", "3", *TINY]).exit_code == 0
    # resuming with a different network width cannot load the checkpoint: the message names the mismatch
    r = runner.invoke(app, ["train", "--out", str(run), "--resume", "--steps", "6",
                            "--set", "model.options={hidden_dim: 48, num_blocks: 1}"])
    out = r.output.replace("\n", " ")
    assert r.exit_code == 2 and "different architecture" in out and "Traceback" not in out
    # the README's resume at a lower rate: the new steps take it, and the run's saved config names it
    r = runner.invoke(app, ["train", "--out", str(run), "--resume", "--steps", "2", "--set", "train.lr=1e-5",
                            "--set", "train.warmup_steps=0", "--set", "train.log_every=1"])
    assert r.exit_code == 0, r.output
    from difflab.train import read_log
    assert [(x["step"], x["lr"]) for x in read_log(run / "log.jsonl")][-2:] == [(4, 1e-5), (5, 1e-5)]
    # and 4 steps more that decay linearly to 0 (warm-up, stable, decay); without a step limit it is refused
    r = runner.invoke(app, ["train", "--out", str(run), "--resume", "--minutes", "1", "--set", "train.lr_decay=linear"])
    assert r.exit_code == 2 and "give a step limit past lr_decay_from" in " ".join(r.output.split()), r.output
    assert "Traceback" not in r.output
    r = runner.invoke(app, ["train", "--out", str(run), "--resume", "--steps", "4", "--set", "train.lr_decay=linear",
                            "--set", "train.lr_decay_from=5"])
    assert r.exit_code == 0, r.output
    assert [x["lr"] for x in read_log(run / "log.jsonl")][-4:] == pytest.approx([1e-5, 7.5e-6, 5e-6, 2.5e-6], rel=1e-12)


def test_run_json_records_the_data_range_and_sampling_honours_it(tmp_path):
    import json

    from difflab.config.factory import build_data
    from difflab.config.loader import load_config
    from difflab.jobs.runs import read_meta, write_meta
    from difflab.jobs.train import run_meta

    run = tmp_path / "run"
    assert runner.invoke(app, ["train", "toy2d", "--out", str(run), "--steps", "2", *TINY]).exit_code == 0
    saved = json.loads((run / "run.json").read_text())
    assert "value_range" in saved and saved["value_range"] is None  # vectors: unbounded, recorded as null
    cfg = load_config("digits")
    digits = run_meta(tmp_path / "d", build_data(cfg.data), cfg, None, resume=False)
    write_meta(tmp_path, digits)
    assert json.loads((tmp_path / "run.json").read_text())["value_range"] == [-1.0, 1.0]
    assert read_meta(tmp_path).value_range == (-1.0, 1.0)
    # sampling clamps to the recorded range (here a narrower one than the data's), not to a shape rule
    (run / "run.json").write_text(json.dumps({**saved, "value_range": [-0.25, 0.5]}))
    r = runner.invoke(app, ["sample", str(run), "--n", "64", "--steps", "2", "--out", str(tmp_path / "s.png"),
                            "--save-array", str(tmp_path / "s.npy")])
    assert r.exit_code == 0, r.output
    x = np.load(tmp_path / "s.npy")
    assert x.min() == pytest.approx(-0.25) and x.max() == pytest.approx(0.5)
    # a run.json written before the range was recorded still samples (the shape fallback: unbounded) and resumes
    (run / "run.json").write_text(json.dumps({k: v for k, v in saved.items() if k != "value_range"}))
    assert read_meta(run).value_range == "auto"
    r = runner.invoke(app, ["sample", str(run), "--n", "64", "--steps", "2", "--out", str(tmp_path / "s.png"),
                            "--save-array", str(tmp_path / "s.npy")])
    assert r.exit_code == 0 and np.abs(np.load(tmp_path / "s.npy")).max() > 0.5, r.output
    assert runner.invoke(app, ["train", "--out", str(run), "--resume", "--steps", "1"]).exit_code == 0
    assert json.loads((run / "run.json").read_text())["value_range"] is None


def test_previews_use_the_sample_sections_options(tmp_path, monkeypatch):
    """A preview is drawn as `difflab sample` draws it: with sample.options and sample.schedule_options."""
    from dataclasses import replace

    import difflab.jobs.train as train_job
    from difflab.config.schema import RunConfig, SampleConfig
    from difflab.jobs.generate import generate
    from difflab.jobs.runs import RunMeta
    from difflab.utils.errors import DifflabError
    from tests.train.helpers import tiny_denoiser

    drawn = []
    monkeypatch.setattr(train_job, "plot_points", lambda x, *a, **k: drawn.append(x))
    model, meta = tiny_denoiser(num_classes=None), RunMeta((2,), None, None, value_range=None)
    sample = SampleConfig(sampler="euler", steps=4, schedule="karras", n=16, seed=3,
                          options={"s_churn": 2.0}, schedule_options={"rho": 3.0})
    train_job.preview_fn(meta, RunConfig(sample=sample), None, None)(model, 1, tmp_path)
    common = dict(sampler="euler", steps=4, schedule="karras", seed=3)
    chosen = generate(model, meta, 16, **common, options={"s_churn": 2.0}, schedule_options={"rho": 3.0}).x
    plain = generate(model, meta, 16, **common).x
    assert torch.equal(drawn[0], chosen) and not torch.allclose(drawn[0], plain)
    bad = RunConfig(sample=replace(sample, options={"s_chrun": 2.0}))
    with pytest.raises(DifflabError, match="s_chrun"):
        train_job.preview_fn(meta, bad, None, None)(model, 1, tmp_path)


def test_sample_and_eval_a_chosen_checkpoint(tmp_path):
    """--checkpoint STEP samples ckpt-STEP: the same array as a copy of the run holding only that checkpoint;
    a missing step names the steps there are, a damaged one names the file."""
    import json
    import shutil

    run = tmp_path / "run"
    args = ["--set", "train.ckpt_every=5", "--set", "train.keep_last=null"]
    r = runner.invoke(app, ["train", "toy2d", "--out", str(run), "--steps", "10", *TINY, *args])
    assert r.exit_code == 0, r.output
    only5 = tmp_path / "only5"
    only5.mkdir()
    shutil.copy(run / "run.json", only5 / "run.json")
    shutil.copytree(run / "ckpt-5", only5 / "ckpt-5")
    arrays = {}
    for name, source, extra in [("chosen", run, ["--checkpoint", "5"]), ("copy", only5, []), ("newest", run, [])]:
        r = runner.invoke(app, ["sample", str(source), "--n", "20", "--steps", "4", "--no-grid",
                                "--save-array", str(tmp_path / f"{name}.npy"), *extra])
        assert r.exit_code == 0, r.output
        arrays[name] = np.load(tmp_path / f"{name}.npy")
    assert np.array_equal(arrays["chosen"], arrays["copy"]) and not np.array_equal(arrays["chosen"], arrays["newest"])
    r = runner.invoke(app, ["eval", str(run), "--checkpoint", "5", "--n", "64", "--metrics", "sw2",
                            "--json", str(tmp_path / "e.json")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "e.json").read_text())["settings"]["checkpoint"].endswith("ckpt-5")
    r = runner.invoke(app, ["sample", str(run), "--checkpoint", "7"])
    assert r.exit_code == 2 and "no checkpoint ckpt-7; its checkpoints are at steps 5, 10" in r.output.replace("\n", " ")
    (run / "ckpt-5" / "ema.safetensors").write_bytes(b"broken")
    r = runner.invoke(app, ["sample", str(run), "--checkpoint", "5", "--no-grid", "--save-array", str(tmp_path / "x.npy")])
    out = r.output.replace("\n", " ")
    assert r.exit_code == 2 and "ema.safetensors" in out and "choose another --checkpoint" in out and "Traceback" not in out
    r = runner.invoke(app, ["eval", "--real", str(tmp_path), "--fake", str(tmp_path), "--checkpoint", "5"])
    assert r.exit_code == 2 and "--checkpoint only apply to a RUN" in r.output.replace("\n", " ")
