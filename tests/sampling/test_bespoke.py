"""The bespoke solver (difflab.sampling.bespoke) and its fit (difflab.sampling.bespoke_fit), against DEIS and
the exact probability-flow endpoint of Gaussian mixtures."""

import re

import pytest
import torch

from difflab.analysis import ring_mixture
from difflab.process import DiscreteVP, RectifiedFlow
from difflab.sampling import SAMPLERS, FittedGrid, fit_grid, make_grid, probability_flow, sample
from difflab.sampling.bespoke import initial_weights, ipndm_table
from difflab.sampling.bespoke_fit import _Solver
from difflab.sampling.core import Run
from difflab.sampling.counting import CountingDenoiser
from difflab.sampling.optimize import GridFamily
from difflab.utils.errors import DifflabError

f64 = torch.float64


def _noise(n, seed):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=f64)


@pytest.mark.parametrize("process, param, grid", [(DiscreteVP(), "eps", "polynomial"),
                                                  (RectifiedFlow(), "velocity", "uniform")])
def test_unfitted_bespoke_is_deis(process, param, grid):
    D = ring_mixture().denoiser(process, param)
    ts, z = make_grid(process, grid, 7), _noise(64, 0)
    assert torch.equal(SAMPLERS["bespoke"](D, z, ts), SAMPLERS["deis"](D, z, ts))


@pytest.mark.parametrize("process, param, grid", [(DiscreteVP(), "eps", "polynomial"),
                                                  (RectifiedFlow(), "velocity", "uniform")])
def test_the_fitted_arithmetic_is_the_samplers(process, param, grid):
    """The differentiable solver the fit descends is the sampler, for any grid and weights it reaches."""
    D = ring_mixture().denoiser(process, param)
    ts, z = make_grid(process, grid, 6).to(f64), _noise(32, 1)
    solver = _Solver(D, GridFamily(process, 6), ts, initial_weights(Run(D, z[:1], ts)))
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        assert torch.allclose(solver.times(), ts, rtol=0, atol=1e-6)  # the last point sits 1e-6 of the span inside its bound
        for p in solver.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=f64))
        moved = solver(z)
    direct = SAMPLERS["bespoke"](D, z, solver.times().detach(), weights=solver.weights().detach())
    assert not torch.allclose(solver.times().detach(), ts)
    assert torch.allclose(moved, direct, rtol=0, atol=1e-10)


def test_fit_lowers_the_error_on_fresh_noise():
    process = DiscreteVP()
    D = ring_mixture().denoiser(process, "eps")
    steps = 8
    fitted = fit_grid(D, steps, "bespoke", shape=(2,), pilot=256, seed=3, max_evals=40, dtype=f64)
    assert fitted.sampler == "bespoke" and fitted.weights.shape == (steps, steps) and fitted.times.numel() == steps + 1
    z = _noise(1024, 11)
    exact = probability_flow(D, z, [1.0, 0.0], rtol=1e-8, atol=1e-8, method="DOP853")
    out = sample(D, z, sampler="bespoke", steps=steps, schedule=fitted)
    deis = sample(D, z, sampler="deis", steps=steps, schedule="polynomial")
    assert out.nfe == steps and out.fit_nfe == 0
    ratio = float((out.x - exact).square().mean().sqrt() / (deis.x - exact).square().mean().sqrt())
    assert 0.2 < ratio < 0.85, ratio  # measured 0.72


def test_fitted_solver_round_trips_and_is_checked():
    D = ring_mixture().denoiser(RectifiedFlow(), "velocity")
    counted = CountingDenoiser(D)
    fitted = fit_grid(counted, 4, "bespoke", shape=(2,), pilot=16, seed=0, max_evals=2, dtype=f64)
    assert counted.nfe == fitted.fit_nfe
    solve = CountingDenoiser(D)
    probability_flow(solve, torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=f64), [1.0, 0.0],
                     rtol=1e-7, atol=1e-7)
    assert fitted.fit_nfe == solve.nfe + (2 + 1 + 1) * 4  # the solve, a run per iterate (start included), the held-out run
    again = FittedGrid.from_dict(fitted.to_dict())
    assert torch.equal(again.weights, fitted.weights) and torch.equal(again.times, fitted.times)
    z = _noise(8, 4)
    assert torch.equal(sample(D, z, sampler="bespoke", steps=4, schedule=again).x,
                       SAMPLERS["bespoke"](D, z, fitted.times, weights=fitted.weights))
    with pytest.raises(DifflabError, match="fitted for sampler 'bespoke'"):
        sample(D, z, sampler="deis", steps=4, schedule=again)
    bad = {**fitted.to_dict(), "weights": [[1.0]]}
    with pytest.raises(DifflabError, match="4 x 4 table"):
        FittedGrid.from_dict(bad)
    with pytest.raises(DifflabError, match="takes no options"):
        fit_grid(D, 4, "bespoke", shape=(2,), options={"order": 2})


def test_fit_through_a_network_leaves_its_weights_alone():
    from difflab.nets import MLPNet
    from difflab.param.denoiser import NetworkDenoiser

    torch.manual_seed(0)
    model = NetworkDenoiser(MLPNet(data_dim=2, hidden_dim=16, num_blocks=1), RectifiedFlow(), "velocity").eval()
    before = [p.detach().clone() for p in model.parameters()]
    fitted = fit_grid(model, 3, "bespoke", shape=(2,), pilot=8, max_evals=2)
    assert fitted.weights.shape == (3, 3)
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))


@pytest.mark.parametrize("grid", ["trailing", "polynomial"])
def test_the_ipndm_table_is_ipndm(grid):
    """start_weights='ipndm': the bespoke update with iPNDM's Adams-Bashforth table is iPNDM."""
    process = DiscreteVP()
    D = ring_mixture().denoiser(process, "eps")
    ts, z = make_grid(process, grid, 9), _noise(64, 5)
    table = ipndm_table(Run(D, z[:1], ts))
    assert torch.equal(table[:4, :4], torch.tensor([[1, 0, 0, 0], [3 / 2, -1 / 2, 0, 0],
                                                    [23 / 12, -16 / 12, 5 / 12, 0],
                                                    [55 / 24, -59 / 24, 37 / 24, -9 / 24]], dtype=f64))
    assert torch.allclose(SAMPLERS["bespoke"](D, z, ts, weights=table), SAMPLERS["ipndm"](D, z, ts),
                          rtol=0, atol=1e-12)


def test_a_fit_starts_where_it_is_told():
    """Zero iterations keep the start: the trailing grid and iPNDM's table, with the start on the receipt."""
    process = DiscreteVP()
    D = ring_mixture().denoiser(process, "eps")
    fitted = fit_grid(D, 6, "bespoke", shape=(2,), pilot=8, seed=0, max_evals=0, dtype=f64,
                      start=("trailing", "ipndm"))
    ts = make_grid(process, "trailing", 6).to(f64)
    assert torch.allclose(fitted.times, ts, rtol=0, atol=1e-6)
    assert torch.equal(fitted.weights, ipndm_table(Run(D, _noise(1, 0), ts)))
    assert fitted.start == "ipndm on trailing" and FittedGrid.from_dict(fitted.to_dict()).start == fitted.start


@pytest.mark.parametrize("sampler, start, message", [
    ("deis", ("trailing", "ipndm"), "a start is the bespoke fit's"),
    ("bespoke", ("trailing", "plms"), "start_weights"),
    ("bespoke", ("zigzag", "deis"), "start_schedule"),
])
def test_a_bad_start_is_refused_by_name(sampler, start, message):
    D = ring_mixture().denoiser(DiscreteVP(), "eps")
    with pytest.raises(DifflabError, match=message):
        fit_grid(D, 4, sampler, shape=(2,), pilot=8, seed=0, max_evals=0, dtype=f64, start=start)


def test_a_discrete_start_grid_must_span_the_fit():
    D = ring_mixture().denoiser(DiscreteVP(), "eps")
    with pytest.raises(DifflabError, match="start the fit from another grid"):
        fit_grid(D, 4, "bespoke", shape=(2,), pilot=8, seed=0, max_evals=0, dtype=f64, t_max=0.5,
                 start=("trailing", "deis"))


def test_several_starts_keep_the_fit_of_lowest_fitting_loss():
    """Two starts on one pilot: zero iterations keep the start whose own RMSE on the fitting part (computed
    here with the samplers themselves) is lower; with iterations, the result is that start's single fit, bit
    for bit, and fit_nfe counts one adaptive solve and both descents."""
    process = DiscreteVP()
    D = ring_mixture().denoiser(process, "eps")
    starts = [("trailing", "ipndm"), ("polynomial", "deis")]
    z = _noise(64, 0)[:56]  # the pilot's fitting part (the last eighth is held out)
    exact = probability_flow(D, z, [1.0, 0.0], rtol=1e-10, atol=1e-10, method="DOP853")
    rmse = {grid: float((SAMPLERS[w](D, z, make_grid(process, grid, 6).to(f64)) - exact).square().mean().sqrt())
            for grid, w in starts}
    winner = min(starts, key=lambda st: rmse[st[0]])
    kept = fit_grid(D, 6, "bespoke", shape=(2,), pilot=64, seed=0, max_evals=0, dtype=f64, start=starts)
    assert torch.allclose(kept.times, make_grid(process, winner[0], 6).to(f64), rtol=0, atol=1e-6)
    assert kept.start.startswith(f"{winner[1]} on {winner[0]} (lowest fitting RMSE of ")
    for grid, w in starts:  # the receipt's figure for each start, to its 4 digits
        shown = float(re.search(rf"{w} on {grid} ([0-9.e-]+)", kept.start.split(" (", 1)[1]).group(1))
        assert shown == pytest.approx(rmse[grid], rel=1e-3)
    counted = CountingDenoiser(D)
    both = fit_grid(counted, 6, "bespoke", shape=(2,), pilot=64, seed=0, max_evals=3, dtype=f64, start=starts)
    solve = CountingDenoiser(D)
    probability_flow(solve, _noise(64, 0), [1.0, 0.0], rtol=1e-7, atol=1e-7)
    assert counted.nfe == both.fit_nfe == solve.nfe + 2 * (3 + 1) * 6 + 6
    name = both.start.split(" (")[0]
    alone = fit_grid(D, 6, "bespoke", shape=(2,), pilot=64, seed=0, max_evals=3, dtype=f64,
                     start=next(st for st in starts if f"{st[1]} on {st[0]}" == name))
    assert torch.equal(both.times, alone.times) and torch.equal(both.weights, alone.weights)
    assert both.pilot_rmse == alone.pilot_rmse
