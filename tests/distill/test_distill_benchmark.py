"""benchmarks/distill_digits.py's row machinery: a row's own sample settings, the best row per NFE, the grids."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from difflab.config.loader import load_config
from difflab.jobs.runs import LoadedRun
from difflab.process import make_process
from difflab.sampling.grids import make_grid
from difflab.utils.errors import DifflabError

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "distill_digits.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("distill_digits", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _loaded(**sample) -> LoadedRun:
    cfg = load_config("digits", [f"sample.{k}={v}" for k, v in sample.items()])
    return LoadedRun(config=cfg, meta=None, model=None, checkpoint=Path("ckpt-1"), text_encoder=None)


def test_a_rows_sample_replaces_the_runs_fields_whole(bench):
    run = _loaded(sampler="consistency", schedule="karras", **{"schedule_options": "{sigma_max: 80, sigma_min: 0.8}"})
    assert bench.with_sample(run, None) is run
    other = bench.with_sample(run, {"schedule": "uniform", "schedule_options": {"t_max": 0.5}})
    s = other.config.sample
    assert (s.sampler, s.schedule, s.schedule_options) == ("consistency", "uniform", {"t_max": 0.5})
    # a named grid without options drops the run's grid options (karras' sigma_min is no uniform option)
    assert bench.with_sample(run, {"schedule": "uniform"}).config.sample.schedule_options == {}
    # a new sampler keeps the run's grid and its options, and drops the run's sampler options
    s = bench.with_sample(run, {"sampler": "unipc"}).config.sample
    assert (s.sampler, s.schedule, s.schedule_options, s.options) == ("unipc", "karras", {"sigma_max": 80,
                                                                                          "sigma_min": 0.8}, {})
    assert run.config.sample.schedule == "karras"  # the run itself is unchanged
    with pytest.raises(DifflabError, match="steps"):
        bench.with_sample(run, {"steps": 4})


def test_best_rows_and_grid_text(bench):
    rows = [{"nfe": 2, "fdd": 5.0}, {"nfe": 2, "fdd": 4.0}, {"nfe": 4, "fdd": 3.0}, {"nfe": 2, "fdd": 4.0}]
    best = bench.best_rows(rows)
    assert best[2] is rows[1] and best[4] is rows[2] and set(best) == {2, 4}
    assert bench.grid_text({"schedule": "uniform", "schedule_options": {"t_max": 80 / 81}}) == "uniform, t_max=0.9877"
    assert bench.grid_text({"schedule": "default"}) == "default"


def test_the_consistency_rows_uniform_grid_levels(bench):
    """On the flow process sigma~ = t / (1 - t): the grid uniform in t from t = 80/81 starts at sigma~ = 80 and
    its 4 levels are t = (80/81)(1 - i/4), i.e. sigma~ = 80, 60/21, 40/41, 20/61 (by hand)."""
    spec = bench.UNIFORM_FROM_80
    process = make_process("flow")
    for steps, expected in ((4, [80.0, 60 / 21, 40 / 41, 20 / 61]), (2, [80.0, 40 / 41])):
        ts = make_grid(process, spec["schedule"], steps, **spec["schedule_options"])
        assert ts.dtype == torch.float64 and ts.numel() == steps + 1 and float(ts[-1]) == 0.0
        sigma = ts[:-1] / (1 - ts[:-1])
        assert torch.allclose(sigma, torch.tensor(expected, dtype=torch.float64), rtol=1e-12), sigma


def test_a_row_is_the_mean_over_seeds_and_the_report_gives_its_spread_and_the_fit_cost(bench, tmp_path, monkeypatch):
    from types import SimpleNamespace

    def fake(loaded, *, seed, **_):
        return SimpleNamespace(settings={"sampler": "consistency", "schedule": "fitted", "nfe": 4},
                               results={"fdd": [4.0, 5.0, 9.0][seed], "class_coverage": [1.0, 0.9, 0.8][seed]})

    monkeypatch.setattr(bench, "evaluate_loaded", fake)
    row = bench.score(_loaded(sampler="consistency"), 10, None, 4, None, seeds=3)
    assert row["fdd_seeds"] == [4.0, 5.0, 9.0] and row["fdd"] == pytest.approx(6.0, abs=1e-12)
    assert row["fdd_sd"] == pytest.approx(7.0**0.5, abs=1e-12)  # sample sd of 4, 5, 9: sqrt((4 + 1 + 9) / 2)
    assert row["class_coverage"] == pytest.approx(0.9, abs=1e-12)
    import json

    fit = {"sampler": "consistency", "steps": 4, "metric": "fdd", "start_schedule": "uniform", "times": [0.98, 0.7, 0.4,
           0.2, 0.0], "grids_scored": 31, "pilot": 1000, "fit_nfe": 124, "seconds": 300.0}
    (tmp_path / "consistency.json").write_text(json.dumps({"rows": [{"label": "4 steps", **row}], "seeds": 3,
                                                           "cost": None, "fits": [fit]}))
    table = bench.report(tmp_path, None, ["consistency"], 10)
    assert "| consistency | consistency (fitted) | 4 | 6.000 +- 2.65 | 0.90 |" in table
    assert "mean over seeds 0..2 of 10 samples" in table and "31 grids of 1000 samples, 124 denoiser calls" in table
    assert "0.9800, 0.7000, 0.4000, 0.2000, 0.0000; " in table
