"""`difflab fit-schedule RUN`: the grid is fitted once to a real (tiny, float32, untrained) network, saved
in the run folder with its set-up cost, and reused by name at the sampling cost alone. The run is built in
memory (load_run replaced), so the test does not depend on training."""

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import difflab.jobs.fit_schedule as job
from difflab.cli.main import app
from difflab.jobs.fit_schedule import load_fitted_schedule, resolve_schedule, schedule_path
from difflab.jobs.runs import LoadedRun, RunMeta
from difflab.nets import MLPNet
from difflab.param.denoiser import NetworkDenoiser
from difflab.process import RectifiedFlow
from difflab.sampling import FittedGrid, sample


@pytest.fixture
def tiny_run(tmp_path, monkeypatch):
    torch.manual_seed(0)
    net = MLPNet(data_dim=2, hidden_dim=16, num_blocks=1)
    torch.nn.init.normal_(net.out_proj.weight, std=0.1)
    model = NetworkDenoiser(net, RectifiedFlow(), "velocity").eval().requires_grad_(False)
    loaded = LoadedRun(None, RunMeta((2,), None, None), model, Path("ckpt-5"), None)
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.setattr(job, "load_run", lambda r, ema=True, device="cpu": loaded)
    return run, model


def test_fit_schedule_saves_and_is_reused(tiny_run):
    (run, model), runner = tiny_run, CliRunner()
    r = runner.invoke(app, ["fit-schedule", str(run), "--steps", "3", "--sampler", "dpmpp_2m", "--pilot", "8",
                            "--max-evals", "3", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    saved = json.loads(schedule_path(run, "dpmpp_2m", 3).read_text())
    assert saved["steps"] == 3 and len(saved["times"]) == 4 and saved["fit_nfe"] > 3 * 7
    assert f"one-time set-up {saved['fit_nfe']} denoiser calls on 8 samples" in " ".join(r.output.split())
    fitted = resolve_schedule(run, "fitted", "dpmpp_2m", 3)
    assert isinstance(fitted, FittedGrid) and fitted.fit_nfe == saved["fit_nfe"]
    out = sample(model, (5, 2), sampler="dpmpp_2m", steps=3, schedule=fitted, seed=0)
    assert out.nfe == 3 and out.fit_nfe == 0 and torch.equal(out.times, fitted.times)
    assert resolve_schedule(run, "logsnr", "dpmpp_2m", 3) == "logsnr"


def test_missing_fit_names_the_command(tmp_path):
    (tmp_path / "run").mkdir()
    try:
        load_fitted_schedule(tmp_path / "run", "unipc", 7)
    except Exception as err:  # noqa: BLE001 - the message is what is tested
        assert "difflab fit-schedule" in str(err) and "--steps 7 --sampler unipc" in str(err)
    else:
        raise AssertionError("no error for a missing fit")
    r = CliRunner().invoke(app, ["fit-schedule", str(tmp_path / "nope"), "--steps", "3", "--device", "cpu"])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_bespoke_solver_is_fitted_saved_and_reused(tiny_run):
    """--sampler bespoke keeps the grid and the fitted weights; sampling on it runs those weights."""
    (run, model), runner = tiny_run, CliRunner()
    r = runner.invoke(app, ["fit-schedule", str(run), "--steps", "4", "--sampler", "bespoke", "--pilot", "16",
                            "--max-evals", "3", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "4-step grid and weights for bespoke" in " ".join(r.output.split())
    saved = json.loads(schedule_path(run, "bespoke", 4).read_text())
    assert len(saved["weights"]) == 4 and all(len(row) == 4 for row in saved["weights"])
    fitted = resolve_schedule(run, "fitted", "bespoke", 4)
    assert fitted.weights is not None and fitted.fit_nfe == saved["fit_nfe"]
    z = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    out = sample(model, z, sampler="bespoke", steps=4, schedule=fitted)
    from difflab.sampling import SAMPLERS

    assert out.nfe == 4 and torch.equal(out.x, SAMPLERS["bespoke"](model, z, fitted.times, weights=fitted.weights))


def test_bespoke_start_options(tiny_run):
    """--start-schedule / --start-weights choose where the bespoke descent starts, and are on the receipt."""
    (run, _model), runner = tiny_run, CliRunner()
    r = runner.invoke(app, ["fit-schedule", str(run), "--steps", "3", "--sampler", "bespoke", "--pilot", "8",
                            "--max-evals", "0", "--start-schedule", "uniform", "--start-weights", "ipndm",
                            "--device", "cpu"])
    assert r.exit_code == 0, r.output
    saved = json.loads(schedule_path(run, "bespoke", 3).read_text())
    assert saved["start"] == "ipndm on uniform" and saved["weights"][1][:2] == [1.5, -0.5]
    r = runner.invoke(app, ["fit-schedule", str(run), "--steps", "3", "--sampler", "dpmpp_2m", "--pilot", "8",
                            "--start-weights", "ipndm", "--device", "cpu"])
    assert r.exit_code == 2 and "a start is the bespoke fit's" in r.output and "Traceback" not in r.output


def test_several_bespoke_starts(tiny_run):
    """Repeated --start-schedule (one --start-weights for all) descends from each; the receipt names them."""
    (run, _model), runner = tiny_run, CliRunner()
    r = runner.invoke(app, ["fit-schedule", str(run), "--steps", "3", "--sampler", "bespoke", "--pilot", "8",
                            "--max-evals", "1", "--start-schedule", "uniform", "--start-schedule", "logsnr",
                            "--start-weights", "ipndm", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    saved = json.loads(schedule_path(run, "bespoke", 3).read_text())
    assert "(lowest fitting RMSE of ipndm on uniform " in saved["start"] and "ipndm on logsnr " in saved["start"]
    r = runner.invoke(app, ["fit-schedule", str(run), "--steps", "3", "--sampler", "bespoke", "--pilot", "8",
                            "--start-schedule", "uniform", "--start-schedule", "logsnr", "--start-weights", "ipndm",
                            "--start-weights", "deis", "--start-weights", "deis", "--device", "cpu"])
    assert r.exit_code == 2 and "2 --start-schedule and 3 --start-weights" in r.output, r.output
