"""Fitting the bespoke solver (difflab.sampling.bespoke): its grid and its weight table, by gradient descent
through the solver on a pilot batch.

1. draw a pilot batch x_T (its own seed) and solve the probability-flow ODE adaptively: the exact endpoints;
   the last eighth of the batch (at least one sample) is held out for validation;
2. start from DEIS (order 3, time polynomial) on the process's default fixed grid: b_ij = C_ij / (rho_{i+1}
   - rho_i), or from another grid (`start_schedule`) and iPNDM's table (`start_weights`); the interior times
   are described by their log-SNR, lambda_k = lambda_start + (lambda_stop - lambda_start) sigmoid(s) cumsum(softmax(u))_k (increasing for any u, s), the ends t_max and t_end fixed;
3. minimize the mean squared error of the solver's endpoint on the fitting part with Adam (the solver is
   written here once more as a differentiable function of (u, s, b), the same arithmetic as `bespoke`),
   cosine learning-rate decay, and keep the iterate with the lowest loss on the fitting part (the start
   included, so the fit is never worse than DEIS there); the held-out part reports its RMSE.

Cost, counted in the returned FittedGrid's fit_nfe: one adaptive solve plus, per iteration, one solver run
with gradients on the fitting part (steps calls), and one run on the held-out part at the end; with several
starts (`starts`), one descent per start on the same pilot and endpoints, the lowest fitting loss kept. Gradients flow
through the denoiser: a network costs a backward pass per call, so keep the pilot to a few hundred images.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from difflab.param.parameterization import get_parameterization
from difflab.sampling.bespoke import START_WEIGHTS, start_table
from difflab.sampling.core import Run
from difflab.sampling.counting import CountingDenoiser
from difflab.sampling.fitted import FittedGrid
from difflab.sampling.grids import GRIDS, check_grid, make_grid, schedule_options
from difflab.sampling.optimize import GridFamily, pilot_batch
from difflab.utils.cond import cond_index
from difflab.utils.errors import DifflabError, check_choice

f64 = torch.float64


def _start_schedule(process, steps: int, schedule: str | None) -> str:
    """`schedule`, or None: the process's default grid for DEIS (difflab.sampling.default_schedule)."""
    from difflab.sampling.api import (
        default_schedule,  # api imports optimize, which imports this module lazily
    )

    return default_schedule(process, "deis", steps) if schedule is None else schedule


def _start_grid(process, steps: int, t_max: float, t_end: float, schedule: str) -> Tensor:
    """The grid named `schedule` (difflab.sampling.GRIDS) the fit starts from, from t_max to t_end."""
    check_choice("start_schedule", schedule, tuple(GRIDS))
    if {"t_max", "t_end"} <= schedule_options(schedule):
        return make_grid(process, schedule, steps, t_max=t_max, t_end=t_end).to(f64)
    grid = make_grid(process, schedule, steps).to(f64)  # a discrete spacing: its ends are the table's
    if abs(float(grid[0]) - t_max) > 1e-9 or abs(float(grid[-1]) - t_end) > 1e-9:
        raise DifflabError(f"the grid {schedule!r} runs from {float(grid[0]):g} to {float(grid[-1]):g}, not from "
                           f"t_max = {t_max:g} to t_end = {t_end:g}: start the fit from another grid")
    return grid


class _Solver(torch.nn.Module):
    """The bespoke solver as a differentiable function of its grid and weights (module doc, step 2)."""

    def __init__(self, denoiser, family: GridFamily, start: Tensor, weights: Tensor):
        super().__init__()
        self.denoiser, self.family = denoiser, family
        self.process, self.n = denoiser.process, start.numel() - 1
        self.param = get_parameterization(denoiser.parameterization)
        self.lam_start, self.lam_stop = family.lam_start, family.lam_stop
        lam = self.process.log_snr(start[1:-1]).to(f64)
        span = torch.cat([torch.tensor([self.lam_start], dtype=f64), lam])
        inc = (span[1:] - span[:-1]).clamp_min(1e-9)
        frac = float((lam[-1] - self.lam_start) / (self.lam_stop - self.lam_start)) if lam.numel() else 0.5
        frac = min(max(frac, 1e-6), 1 - 1e-6)
        self.u = torch.nn.Parameter(torch.log(inc / inc.sum()))
        self.s = torch.nn.Parameter(torch.tensor(math.log(frac / (1 - frac)), dtype=f64))
        self.b = torch.nn.Parameter(weights.clone())
        self.register_buffer("ends", start[[0, -1]].clone())

    def times(self) -> Tensor:
        if self.n == 1:
            return self.ends
        frac = torch.cumsum(torch.softmax(self.u, 0), 0)
        lam = self.lam_start + (self.lam_stop - self.lam_start) * torch.sigmoid(self.s) * frac
        inner = self.process.t_from_log_snr(lam).to(f64)
        return torch.cat([self.ends[:1], inner, self.ends[1:]])

    def weights(self) -> Tensor:
        return torch.tril(self.b)

    def forward(self, x: Tensor, cond=None) -> Tensor:
        ts, b = self.times(), self.weights()
        k = self.param.coefficients(self.process, ts, x.ndim, f64)
        alpha, sigma = k.alpha.reshape(-1), k.sigma.reshape(-1)
        history: list[Tensor] = []
        for i in range(self.n):
            ki = type(k)(*(v[i].to(x.dtype) for v in k))
            pred = self.param.to_x0_eps(self.denoiser(x, ts[i].to(x.dtype).expand(x.shape[0]), cond), x, ki)
            history = [pred.eps, *history]
            if i == 0 and self.family.from_zero:  # DDIM from rho = inf with the x0 estimate (no weights)
                x = alpha[i + 1].to(x.dtype) * pred.x0 + sigma[i + 1].to(x.dtype) * pred.eps
                continue
            rho_i, rho_next = sigma[i] / alpha[i], sigma[i + 1] / alpha[i + 1]
            comb = sum(b[i, j].to(x.dtype) * history[j] for j in range(i + 1))
            x = (alpha[i + 1] / alpha[i]).to(x.dtype) * x + (alpha[i + 1] * (rho_next - rho_i)).to(x.dtype) * comb
        return x


def fit_bespoke(
    denoiser,
    steps: int,
    *,
    shape: tuple[int, ...],
    pilot: int = 256,
    seed: int = 0,
    iterations: int = 150,
    lr: float = 3e-3,
    cond=None,
    t_max: float = 1.0,
    t_end: float = 0.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    start_schedule: str | None = None,
    start_weights: str = "deis",
    starts: list[tuple[str | None, str]] | None = None,
) -> FittedGrid:
    """The bespoke solver of `steps` steps fitted to `denoiser` (module doc) on `pilot` samples of `shape`
    drawn from `seed`: a FittedGrid for sampler 'bespoke' whose `weights` hold the table b, `pilot_rmse` the
    validation RMSE of the kept iterate and `fit_nfe` every call the fit made. The descent starts from
    `start_weights` ('deis' or 'ipndm') on the grid `start_schedule` (None: the process's default for DEIS);
    the fit is local, so a start near the best fixed method of the data ends lower. `starts`: several
    (grid, weights) starts instead, each descended on the same pilot batch and exact endpoints (one adaptive
    solve for all), the fit of lowest loss on the fitting part kept; the receipt's `start` names every start
    with its fitting RMSE, and fit_nfe counts every descent."""
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise DifflabError(f"iterations must be an integer >= 0; got {iterations!r}")
    if isinstance(pilot, bool) or not isinstance(pilot, int) or pilot < 2:
        raise DifflabError(f"the pilot batch needs at least 2 samples; got {pilot!r}")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise DifflabError(f"the learning rate must be a positive number; got {lr!r}")
    process = denoiser.process
    family = GridFamily(process, steps, t_max, t_end)
    starts = [(start_schedule, start_weights)] if starts is None else [tuple(st) for st in starts]
    if not starts or any(len(st) != 2 for st in starts):
        raise DifflabError(f"starts must be a non-empty list of (grid, weights) pairs; got {starts!r}")
    grids = []
    for schedule, weights in starts:
        check_choice("start_weights", weights, START_WEIGHTS)
        schedule = _start_schedule(process, steps, schedule)
        grids.append((schedule, weights, _start_grid(process, steps, t_max, t_end, schedule)))
    counted = CountingDenoiser(denoiser)
    x_T, pilot_cond, exact = pilot_batch(counted, shape, pilot, seed, cond, t_max, t_end, dtype, device)
    n_val = max(1, pilot // 8)
    fit_part, val_part = slice(0, pilot - n_val), slice(pilot - n_val, pilot)
    fit_cond = cond_index(pilot_cond, torch.arange(pilot - n_val)) if pilot_cond else None
    val_cond = cond_index(pilot_cond, torch.arange(pilot - n_val, pilot)) if pilot_cond else None

    frozen = _freeze(denoiser)  # gradients flow through a network's activations, never into its weights
    fits = []
    try:
        for schedule, weights, start in grids:
            b0 = start_table(Run(denoiser, x_T[:1], start), weights)
            solver = _Solver(counted, family, start, b0).to(device)
            optimizer = torch.optim.Adam(solver.parameters(), lr=lr)
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, iterations))
            loss, times, table = _descend(solver, optimizer, scheduler, iterations, x_T[fit_part], exact[fit_part],
                                          fit_cond)
            fits.append((loss, f"{weights} on {schedule}", solver, times, table))
    finally:
        for p in frozen:
            p.requires_grad_(True)
    loss, name, solver, times, weights = min(fits, key=lambda f: f[0])
    with torch.no_grad():
        score = float((solver(x_T[val_part], val_cond) - exact[val_part]).to(f64).square().mean().sqrt())
    if len(fits) > 1:
        name += " (lowest fitting RMSE of " + ", ".join(f"{n} {math.sqrt(v):.4g}" for v, n, *_ in fits) + ")"
    return FittedGrid(check_grid(times.cpu()), "bespoke", steps, fit_nfe=counted.nfe, pilot=pilot, seed=seed,
                      max_evals=iterations, pilot_rmse=score, process=repr(process), weights=weights.cpu(),
                      start=name)


def _freeze(denoiser) -> list[torch.nn.Parameter]:
    params = denoiser.parameters() if isinstance(denoiser, torch.nn.Module) else ()
    frozen = [p for p in params if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    return frozen


def _descend(solver, optimizer, scheduler, iterations, x_fit, exact_fit, fit_cond):
    """Adam on the fitting part; leaves the solver at, and returns (fitting loss, times, weights) of, the iterate
    with the lowest loss on the fitting part (the start and the last step included). The RMSE over a few
    hundred samples is set by the few whose trajectory ends in another component than the exact one's, so the
    iterate is chosen on the larger fitting part and the held-out part only reports it."""
    best_loss, best = math.inf, [p.detach().clone() for p in solver.parameters()]  # the start, if all else diverges
    for k in range(iterations + 1):
        optimizer.zero_grad(set_to_none=True)
        loss = (solver(x_fit, fit_cond) - exact_fit).to(f64).square().mean()
        if not torch.isfinite(loss):
            break  # a diverged step: keep the best iterate so far
        if float(loss.detach()) < best_loss:
            best_loss, best = float(loss.detach()), [p.detach().clone() for p in solver.parameters()]
        if k == iterations:
            break
        loss.backward()
        optimizer.step()
        scheduler.step()
    with torch.no_grad():
        for p, kept in zip(solver.parameters(), best, strict=True):
            p.copy_(kept)
        return best_loss, solver.times().detach().clone(), solver.weights().detach().clone()
