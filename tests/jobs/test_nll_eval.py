"""`difflab eval RUN --metrics nll`: bits/dim of real data against the exact density, the 17-level discrete
bound, the JSON and table, and one clear message for each bad request."""

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from difflab.analysis.gaussian_mixture import GaussianMixture
from difflab.baselines.base import Baseline
from difflab.cli.main import app
from difflab.config.schema import DataConfig, RunConfig
from difflab.data.toy2d import eight_gaussians_mixture, sample_toy
from difflab.jobs.likelihood import baseline_k, evaluate_nll
from difflab.jobs.runs import LoadedRun, RunMeta
from difflab.jobs.train import run_train
from difflab.objectives.vlb import discretized_gaussian_nll
from difflab.process import VPSDE
from difflab.utils.errors import DifflabError
from tests.jobs.test_evaluate import TINY  # the tiny digits U-Net of the eval tests

runner = CliRunner()
PROCESS = VPSDE()


def exact_ring_run(n_data: int = 64) -> LoadedRun:
    """A 'run' whose model is the exact denoiser of toy2d's 8gaussians, on that data set (no held-out split)."""
    cfg = RunConfig(data=DataConfig("toy2d", {"name": "8gaussians", "n": n_data, "seed": 3}))
    cfg.model.network = "mlp"
    mix = GaussianMixture(*eight_gaussians_mixture())
    return LoadedRun(cfg, RunMeta((2,), None, None), mix.denoiser(PROCESS, "eps"), None, None), mix


def test_ode_bits_per_dim_of_the_exact_model_equal_the_exact_density():
    loaded, mix = exact_ring_run()
    results, settings = evaluate_nll(loaded, method="ode", split="train", n=48)
    x = sample_toy("8gaussians", 64, torch.Generator().manual_seed(3))[:48]
    exact_bpd = -mix.log_prob_t(x.double(), torch.tensor(0.0), PROCESS) / (2 * math.log(2))
    assert results["bits_per_dim"] == pytest.approx(float(exact_bpd.mean()), abs=2e-3)
    # the standard error is the spread of the images over sqrt(N) (the ODE itself is exact: mc se 0)
    assert results["bits_per_dim_se"] == pytest.approx(float(exact_bpd.std() / math.sqrt(48)), rel=0.02)
    assert results["bits_per_dim_mc_se"] == 0.0
    assert settings["n"] == 48 and settings["levels"] is None and "exact divergence" in settings["method"]


def test_elbo_of_the_exact_model_bounds_the_density_from_above_within_error():
    loaded, mix = exact_ring_run()
    results, _ = evaluate_nll(loaded, method="elbo", probes=32, split="train", n=48, seed=1)
    x = sample_toy("8gaussians", 64, torch.Generator().manual_seed(3))[:48]
    exact = float((-mix.log_prob_t(x.double(), torch.tensor(0.0), PROCESS) / (2 * math.log(2))).mean())
    gap, se = results["bits_per_dim"] - exact, results["bits_per_dim_mc_se"]
    assert se > 0 and -3 * se < gap < 3 * se + 0.05  # the exact model's bound is tight to its MC error


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_discretized_decoder_masses_sum_to_one_over_the_levels(levels):
    # every bin of the L levels scored under one Gaussian: the masses (edges at +-1 open) sum to 1
    grid = (-1 + torch.arange(levels, dtype=torch.float64) * 2 / (levels - 1))[:, None]
    mean, var = torch.full_like(grid, 0.3), torch.full_like(grid, 0.2)
    mass = torch.exp(-discretized_gaussian_nll(grid, mean, var, levels))
    assert float(mass.sum()) == pytest.approx(1.0, abs=1e-9)
    # the 8-bit default is the old decoder: its bins are 2/255 wide
    if levels == 256:
        assert torch.equal(discretized_gaussian_nll(grid, mean, var), discretized_gaussian_nll(grid, mean, var, 256))


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("nll") / "flow"
    run_train("digits", out, steps=2, overrides=TINY)
    return out


def _nll_json(args, path):
    r = runner.invoke(app, ["eval", *args, "--json", str(path)])
    assert r.exit_code == 0, r.output
    return json.loads(path.read_text()), r.output


def test_cli_nll_on_the_held_out_split_in_the_table_and_json(flow_run, tmp_path):
    a, output = _nll_json([str(flow_run), "--metrics", "nll", "--method", "elbo", "--probes", "4", "--n", "8"],
                          tmp_path / "a.json")
    res, nll = a["results"], a["settings"]["nll"]
    assert set(res) == {"bits_per_dim", "bits_per_dim_se", "bits_per_dim_mc_se", "nll_nats_per_image"}
    assert all(math.isfinite(v) for v in res.values()) and res["bits_per_dim_se"] > 0
    assert res["nll_nats_per_image"] == pytest.approx(res["bits_per_dim"] * 64 * math.log(2))
    assert nll["levels"] == 17 and "'split': 'test'" in nll["data"] and nll["n"] == 8 and "uniform" in nll["dequantization"]
    assert "bits_per_dim" in output and "continuous ELBO" in output
    b, _ = _nll_json([str(flow_run), "--metrics", "nll", "--method", "elbo", "--probes", "4", "--n", "8"],
                     tmp_path / "b.json")
    assert a["results"] == b["results"]  # seeded: the same numbers


def test_vlb_on_a_17_level_ddpm_run(tmp_path):
    out = tmp_path / "ddpm"
    run_train("digits", out, steps=2, overrides=[*TINY, "process.name=ddpm", "process.options={T: 20}",
                                                 "model.parameterization=eps"])
    a, _ = _nll_json([str(out), "--metrics", "nll", "--method", "vlb", "--n", "4"], tmp_path / "v.json")
    assert math.isfinite(a["results"]["bits_per_dim"]) and a["settings"]["nll"]["network_evaluations"] == 20
    assert "discrete levels" in a["settings"]["nll"]["dequantization"]


class Implicit(Baseline):
    family, data_shape, levels, has_likelihood, nfe_per_sample = "gan", (1, 8, 8), 17, False, 1


@pytest.mark.parametrize(
    ("call", "needle"),
    [(lambda: evaluate_nll(exact_ring_run()[0], method="ode"), "has no held-out split to measure the likelihood on: "
      "pass --split train"),
     (lambda: evaluate_nll(exact_ring_run()[0], split="train", levels=17), "not on the 17 declared levels"),
     (lambda: evaluate_nll(exact_ring_run()[0], split="train", method="vlb"), "--method vlb is the discrete DDPM "
      "bound, and this run's process (VPSDE) is continuous: use --method elbo or ode"),
     (lambda: evaluate_nll(exact_ring_run()[0], split="train", probes=0), "--probes must be a whole number >= 1"),
     (lambda: baseline_k(Implicit(), None, None), "a GAN defines no likelihood"),
     (lambda: evaluate_nll(exact_ring_run()[0], split="tests"), "unknown --split")],
)
def test_bad_nll_requests_one_clear_message(call, needle):
    with pytest.raises(DifflabError) as e:
        call()
    assert needle in str(e.value)


def test_cli_nll_options_without_nll_and_on_folders_are_refused(flow_run, tmp_path):
    r = runner.invoke(app, ["eval", str(flow_run), "--metrics", "fdd", "--method", "elbo", "--n", "4"])
    assert r.exit_code != 0 and "--method set(s) the nll metric: add nll to --metrics" in r.output
    assert "Traceback" not in r.output
    r = runner.invoke(app, ["eval", str(flow_run), "--metrics", "nll", "--method", "vlb", "--n", "4"])
    assert r.exit_code != 0 and "--method vlb is the discrete DDPM bound" in r.output
