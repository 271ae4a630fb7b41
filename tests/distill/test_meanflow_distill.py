"""`difflab distill RUN --method meanflow`: the student is the teacher's network plus an interval embedding,
starts as the teacher, and is a run like any other (sampled at 1/2/4 steps, scored, resumed)."""

from __future__ import annotations

import pytest
import torch

from difflab.cli.main import app
from difflab.config.factory import build_denoiser, build_process
from difflab.config.schema import RunConfig
from difflab.config.validate import from_dict
from difflab.distill.meanflow import _config as meanflow_config
from difflab.jobs.distill import start_from_teacher
from difflab.jobs.runs import load_run
from difflab.utils.errors import DifflabError
from tests.distill.test_cli import _config, runner, sample_eval_resume, teacher  # noqa: F401 - the fixture


def test_meanflow_distill_sample_eval_resume(teacher, tmp_path):  # noqa: F811
    out = tmp_path / "mf"
    r = runner.invoke(app, ["distill", str(teacher), "--method", "meanflow", "--out", str(out), "--steps", "2"])
    assert r.exit_code == 0 and "r != t in 25% of the pairs" in r.output, r.output
    cfg, base = _config(out), _config(teacher)
    assert cfg["model"]["options"] == {**base["model"]["options"], "interval_embedding": True}
    assert (cfg["sample"]["sampler"], cfg["sample"]["schedule"], cfg["sample"]["steps"]) == ("meanflow", "uniform", 1)
    sample_eval_resume(out, tmp_path, ("1", "2", "4"), resumed_at=3)


def test_the_student_starts_as_the_teacher(teacher):  # noqa: F811
    """Teacher weights into the student with its zero-initialised interval embedding: u(z, r, t) = v(z, t) for
    any interval, to the last bit."""
    loaded = load_run(teacher)
    d = _config(teacher)
    d["model"]["options"] = {**d["model"]["options"], "interval_embedding": True}
    cfg = from_dict(RunConfig, d)
    student = build_denoiser(cfg, build_process(cfg.process), loaded.meta.data_shape, loaded.meta.num_classes)
    start_from_teacher(student, loaded.model)
    g = torch.Generator().manual_seed(0)
    z, t = torch.randn(6, 2, generator=g), torch.rand(6, generator=g)
    cond = {"class_labels": torch.arange(6) % 8}
    with torch.no_grad():
        v = loaded.model(z, t, cond)
        u = student(z, t, {**cond, "interval": t * torch.rand(6, generator=g)})
    assert torch.equal(u, v)


def test_meanflow_distill_refuses_what_it_cannot_start_from(teacher, tmp_path):  # noqa: F811
    eps = tmp_path / "eps"
    r = runner.invoke(app, ["train", "toy2d", "--out", str(eps), "--steps", "1", "--set", "model.parameterization=eps",
                            "--set", "model.options={hidden_dim: 16, num_blocks: 1}", "--set", "train.sample_every=0",
                            "--set", "data.options={name: 8gaussians, n: 64}", "--set", "train.batch_size=16"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["distill", str(eps), "--method", "meanflow", "--out", str(tmp_path / "a")])
    assert r.exit_code == 2 and "starts from a velocity-prediction teacher" in r.output, r.output
    r = runner.invoke(app, ["distill", str(teacher), "--method", "meanflow", "--out", str(tmp_path / "b"),
                            "--set", "model.options={hidden_dim: 32, num_blocks: 1, interval_embedding: true}"])
    assert r.exit_code == 2 and "does not match the teacher's" in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with pytest.raises(DifflabError, match="sample_steps must be >= 1"):
        meanflow_config({"model": {"parameterization": "velocity"}}, sample_steps=0)
