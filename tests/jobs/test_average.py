"""`difflab average`: a new run whose sampling weights are the mean of a run's checkpoints, the source
only read; refusals name the problem."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from difflab.cli.main import app
from difflab.config.distill import DistillConfig
from difflab.jobs.average import _one_phase
from difflab.jobs.runs import load_run
from difflab.train.checkpoint import sha256
from difflab.utils.errors import DifflabError
from tests.cli.conftest import TINY


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A toy2d run with checkpoints at steps 2, 4 and 6."""
    out = tmp_path_factory.mktemp("avg") / "toy"
    r = CliRunner().invoke(app, ["train", "toy2d", "--out", str(out), "--steps", "6", *TINY, "--set", "train.keep_last=null"])
    assert r.exit_code == 0, r.output
    return out


def _mean(files):
    dicts = [load_file(str(f)) for f in files]
    return {k: np.mean([d[k].double().numpy() for d in dicts], axis=0) for k in dicts[0]}


def _digests(folder):
    return {p.relative_to(folder): sha256(p) for p in folder.rglob("*") if p.is_file() and p.name != ".lock"}


@pytest.mark.parametrize("weights", ["ema", "model"])
def test_the_average_is_the_new_runs_sampling_weights(run, tmp_path, weights):
    before = _digests(run)
    out = tmp_path / "avg"
    r = CliRunner().invoke(app, ["average", str(run), "--out", str(out), "--from", "4", "--weights", weights])
    assert r.exit_code == 0, r.output
    assert "2 checkpoints" in r.output and "steps 4, 6" in r.output
    assert _digests(run) == before  # the source is only read
    name = f"{weights}.safetensors"
    want = _mean([run / "ckpt-4" / name, run / "ckpt-6" / name])
    loaded = load_run(out)
    assert loaded.checkpoint.name == "ckpt-6"
    got = {k: v.double().numpy() for k, v in loaded.model.state_dict().items()}
    for k, v in want.items():
        np.testing.assert_allclose(got[k], v, rtol=0, atol=1e-7)
    # the mean differs from either end (the checkpoints did move), and the raw weights are ckpt-6's
    assert not np.allclose(want["net.out_proj.weight"], load_file(str(run / "ckpt-6" / name))["net.out_proj.weight"])
    assert (out / "ckpt-6" / "model.safetensors").read_bytes() == (run / "ckpt-6" / "model.safetensors").read_bytes()
    receipt = json.loads((out / "averaged.json").read_text())
    assert receipt["checkpoints"] == [4, 6] and receipt["weights"] == weights and receipt["coefficients"] == [0.5, 0.5]
    r = CliRunner().invoke(app, ["sample", str(out), "--n", "4", "--out", str(tmp_path / "s.png")])
    assert r.exit_code == 0 and (tmp_path / "s.png").is_file(), r.output


def test_named_checkpoints(run, tmp_path):
    out = tmp_path / "avg"
    r = CliRunner().invoke(app, ["average", str(run), "--out", str(out), "--checkpoint", "2", "--checkpoint", "6"])
    assert r.exit_code == 0, r.output
    want = _mean([run / "ckpt-2" / "ema.safetensors", run / "ckpt-6" / "ema.safetensors"])
    got = load_file(str(out / "ckpt-6" / "ema.safetensors"))
    assert all(np.allclose(got[k].double().numpy(), v, rtol=0, atol=1e-7) for k, v in want.items())


def test_step_shares_and_a_half_life(run, tmp_path):
    out = tmp_path / "avg"
    r = CliRunner().invoke(app, ["average", str(run), "--out", str(out), "--weighting", "steps", "--half-life", "2"])
    assert r.exit_code == 0, r.output
    # steps 2, 4, 6: trapezoid shares 1, 2, 1 times 2^(-(6 - s) / 2) = 1/4, 1/2, 1
    w = np.array([0.25, 1.0, 1.0]) / 2.25
    dicts = [load_file(str(run / f"ckpt-{s}" / "ema.safetensors")) for s in (2, 4, 6)]
    got = load_file(str(out / "ckpt-6" / "ema.safetensors"))
    for k in got:
        want = sum(c * d[k].double().numpy() for c, d in zip(w, dicts, strict=True))
        np.testing.assert_allclose(got[k].double().numpy(), want, rtol=0, atol=1e-7)
    receipt = json.loads((out / "averaged.json").read_text())
    assert receipt["weighting"] == "steps" and receipt["half_life"] == 2
    np.testing.assert_allclose(receipt["coefficients"], w, rtol=0, atol=1e-12)
    assert "coefficients 0.111, 0.444, 0.444" in " ".join(r.output.split())


@pytest.mark.parametrize("args, message", [
    (["--checkpoint", "3", "--checkpoint", "4"], "has no checkpoint at step 3; its checkpoints are at steps 2, 4, 6"),
    (["--from", "6"], "averaging needs at least two checkpoints, 1 chosen"),
    (["--checkpoint", "2", "--checkpoint", "4", "--to", "4"], "either by --checkpoint or by --from / --to"),
    (["--weights", "raw"], "--weights must be one of ema, model, not 'raw'"),
    (["--weighting", "linear"], "must be one of equal, steps, not 'linear'"),
    (["--half-life", "-5"], "positive number of steps, not -5"),
])
def test_bad_choices_get_one_message(run, tmp_path, args, message):
    out = tmp_path / "avg"
    r = CliRunner().invoke(app, ["average", str(run), "--out", str(out), *args])
    assert r.exit_code == 2 and message in " ".join(r.output.split()), r.output
    assert not out.exists()  # nothing left behind


def test_the_output_must_be_a_new_run(run, tmp_path):
    r = CliRunner().invoke(app, ["average", str(run), "--out", str(run)])
    assert r.exit_code == 2 and "--out is the source run" in r.output, r.output
    r = CliRunner().invoke(app, ["average", str(tmp_path / "nothing"), "--out", str(tmp_path / "avg")])
    assert r.exit_code == 2 and "does not exist" in r.output, r.output
    out = tmp_path / "avg"
    assert CliRunner().invoke(app, ["average", str(run), "--out", str(out)]).exit_code == 0
    r = CliRunner().invoke(app, ["average", str(run), "--out", str(out)])
    assert r.exit_code == 2 and "already holds a run" in r.output and "choose another --out" in r.output, r.output


def test_a_progressive_run_is_averaged_within_one_phase(tmp_path):
    cfg = types.SimpleNamespace(distill=DistillConfig("progressive", "teacher", {"start_steps": 8, "final_steps": 2,
                                                                                  "phase_steps": 100}))
    ckpts = [tmp_path / f"ckpt-{s}" for s in (150, 200)]  # students end at 100 (4 steps) and 200 (2 steps)
    _one_phase(cfg, ckpts)
    with pytest.raises(DifflabError, match="belong to different phases of this progressive run"):
        _one_phase(cfg, [tmp_path / "ckpt-100", *ckpts])
    _one_phase(types.SimpleNamespace(distill=None), [tmp_path / "ckpt-100", *ckpts])
