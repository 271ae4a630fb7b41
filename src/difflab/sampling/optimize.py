"""Step placement fitted to the denoiser: the grid that minimizes a solver's error on a pilot batch.

Exponential integrators (DDIM, DPM-Solver++, UniPC) see the process only through log-SNR lambda: written in
x~ = x/alpha they are the same map for every process given the same lambda grid (and so is the exact
ODE, dx~/dlambda = x0_hat - x~). Where the steps go in lambda is therefore a property of the data and the
solver, and the best place for them is where the trajectories bend: not what a fixed spacing (uniform in
t or lambda, Karras) assumes. We fit it:

1. draw a pilot batch x_T (its own seed) and solve the probability-flow ODE adaptively: the exact endpoints;
2. describe a grid by a few numbers: the last evaluated log-SNR lambda_b (after which the solver jumps to
   the data end), the first spaced log-SNR lambda_a when the start has alpha = 0 (rectified flow; otherwise
   the start t_max itself), and the log-density of the points between them, a cubic in shifted Legendre
   polynomials (all zero = uniform in lambda);
3. minimize log RMSE(solver(pilot) - exact) over them: a coarse search over the ends, then Nelder-Mead.

The result is a FittedGrid (difflab.sampling.fitted): an ordinary grid, to be reused for any batch, with its
receipt. Cost, counted in FittedGrid.fit_nfe: one adaptive solve plus up to max_evals + 12 solver runs on the
pilot batch (measured in docs/benchmarks.md: 650-870 denoiser calls at 5 steps, 1870-2450 at 20 steps, each
on the whole pilot batch).
The benchmark evaluates it on x_T drawn independently of the pilot and states that cost beside the NFE.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from scipy.optimize import minimize
from torch import Tensor

from difflab.process.base import NoiseProcess
from difflab.sampling.adaptive import probability_flow
from difflab.sampling.counting import CountingDenoiser
from difflab.sampling.fitted import FittedGrid
from difflab.sampling.grids import check_grid, check_steps
from difflab.sampling.registry import DETERMINISTIC, SAMPLERS
from difflab.utils.cond import cond_index
from difflab.utils.errors import DifflabError, check_choice

f64 = torch.float64
_MESH = np.linspace(0.0, 1.0, 1025)
_LEGENDRE = np.stack([2 * _MESH - 1, 6 * _MESH**2 - 6 * _MESH + 1, 20 * _MESH**3 - 30 * _MESH**2 + 12 * _MESH - 1])


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


class GridFamily:
    """Grids with `steps` steps from t_max to t_end, described by an unconstrained vector theta =
    [theta_a (only if the start has alpha = 0), theta_b, shape coefficients]."""

    def __init__(self, process: NoiseProcess, steps: int, t_max: float = 1.0, t_end: float = 0.0):
        self.process, self.steps, self.t_max, self.t_end = process, check_steps(steps), t_max, t_end
        lam = lambda t: float(process.log_snr(torch.tensor(t, dtype=f64)))  # noqa: E731
        self.lam_lo, lam_hi = process.log_snr_range
        self.from_zero = float(process.alpha(torch.tensor(t_max, dtype=f64))) == 0.0
        end = lam(t_end)
        self.lam_stop = end if math.isfinite(end) else lam_hi  # bound for the last evaluation
        self.lam_start = self.lam_lo if self.from_zero else lam(t_max)
        self.spaced = steps - 1 if self.from_zero else steps  # points placed by theta (t_max is extra if alpha = 0)
        self.has_a = self.from_zero and self.spaced >= 2
        self.has_b = self.spaced >= 2 or (self.from_zero and self.spaced == 1)
        self.shape_params = min(3, self.spaced - 2) if self.spaced >= 3 else 0
        self.size = int(self.has_a) + int(self.has_b) + self.shape_params

    def ends(self, theta: np.ndarray) -> tuple[float, float]:
        """(first spaced lambda, last evaluated lambda) encoded by theta."""
        lam_a = self.lam_start
        if self.has_a:
            lam_a = self.lam_lo + (self.lam_stop - self.lam_lo) * _sigmoid(theta[0])
        lam_b = lam_a + (self.lam_stop - lam_a) * _sigmoid(theta[int(self.has_a)]) if self.has_b else lam_a
        return lam_a, lam_b

    def encode(self, frac_a: float, frac_b: float) -> np.ndarray:
        """theta for ends at the given fractions of their ranges and a flat shape (uniform in lambda)."""
        theta = ([_logit(frac_a)] if self.has_a else []) + ([_logit(frac_b)] if self.has_b else [])
        return np.array(theta + [0.0] * self.shape_params)

    def times(self, theta: np.ndarray) -> Tensor:
        """The grid (float64 times) for theta."""
        if self.spaced < 1:
            return check_grid([self.t_max, self.t_end])
        lam_a, lam_b = self.ends(theta)
        if self.spaced == 1:
            lam = np.array([lam_b])
        else:
            coef = np.asarray(theta[len(theta) - self.shape_params :])
            log_rho = coef @ _LEGENDRE[: self.shape_params] if self.shape_params else np.zeros_like(_MESH)
            rho = np.exp(log_rho - log_rho.max())
            cdf = np.concatenate([[0.0], np.cumsum(0.5 * (rho[1:] + rho[:-1]))])
            lam = lam_a + (lam_b - lam_a) * np.interp(np.linspace(0, 1, self.spaced), cdf / cdf[-1], _MESH)
        ts = self.process.t_from_log_snr(torch.as_tensor(lam, dtype=f64)).to(f64).clamp(0.0, 1.0)
        if not self.from_zero:
            ts[0] = self.t_max
        head = [torch.tensor([self.t_max], dtype=f64)] if self.from_zero else []
        return check_grid(torch.cat([*head, ts, torch.tensor([self.t_end], dtype=f64)]))


def pilot_batch(counted, shape, pilot: int, seed: int, cond, t_max: float, t_end: float, dtype, device):
    """(x_T, its cond, the exact probability-flow endpoints at t_end): the pilot batch of a fit, x_T ~
    N(0, sigma(t_max)^2) from `seed` (float64 draws cast to dtype, so a seed gives the same batch in any
    dtype); a conditional model's cond cycles through the given rows. The adaptive solve is counted."""
    g = torch.Generator().manual_seed(seed)
    std = float(counted.process.sigma(torch.tensor(t_max, dtype=f64)))
    x_T = (torch.randn(pilot, *shape, generator=g, dtype=f64) * std).to(device=device, dtype=dtype)
    pilot_cond = cond_index(cond, torch.arange(pilot) % next(iter(cond.values())).shape[0]) if cond else None
    with torch.no_grad():
        exact = probability_flow(counted, x_T, [t_max, t_end], cond=pilot_cond, rtol=1e-7, atol=1e-7)
    return x_T, pilot_cond, exact


def fit_grid(
    denoiser,
    steps: int,
    sampler: str = "unipc",
    *,
    shape: tuple[int, ...],
    options: dict | None = None,
    pilot: int = 128,
    seed: int = 0,
    max_evals: int = 150,
    cond=None,
    t_max: float = 1.0,
    t_end: float = 0.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    start: tuple[str | None, str] | list[tuple[str | None, str]] | None = None,
) -> FittedGrid:
    """The grid of `steps` steps that minimizes `sampler`'s RMSE to the exact probability-flow endpoint on a
    pilot batch of `pilot` samples of `shape` (one sample's shape, e.g. (3, 32, 32)) drawn from `seed`
    in `dtype` on `device` (those of the denoiser: a float32 network gets a float32 pilot), see the module
    doc. Deterministic samplers only.

    Returns a FittedGrid: the times and the receipt, fit_nfe = every denoiser call the fit made (one
    adaptive solve and up to `max_evals` + 12 sampler runs, each call on the whole pilot batch). Fit once
    per (denoiser, sampler, steps), save it (FittedGrid.to_dict; `difflab fit-schedule` keeps it in the run
    folder) and pass it as `schedule=` to difflab.sample: its fit_nfe is a set-up cost, reported beside
    the sampling NFE. sampler='bespoke' fits the grid and the bespoke solver's weights instead
    (difflab.sampling.bespoke_fit.fit_bespoke; max_evals: its gradient iterations; no options; `start`:
    (grid name or None, 'deis' or 'ipndm'), where its descent starts, default the process's DEIS grid and DEIS;
    or a list of such pairs: one descent from each on the same pilot, the lowest fitting loss kept).
    """
    check_choice("sampler", sampler, SAMPLERS)
    if start is not None and sampler != "bespoke":
        raise DifflabError(f"a start is the bespoke fit's; the grid search for {sampler!r} takes none")
    if sampler == "bespoke":  # the grid and the solver's weights, by gradient descent (difflab.sampling.bespoke_fit)
        from difflab.sampling.bespoke_fit import fit_bespoke

        if options:
            raise DifflabError(f"the bespoke solver takes no options (its weights are fitted); got {sorted(options)}")
        starts = [start] if start is None or isinstance(start, tuple) else list(start)
        starts = [st or (None, "deis") for st in starts]
        return fit_bespoke(denoiser, steps, shape=shape, pilot=pilot, seed=seed, iterations=max_evals, cond=cond,
                           t_max=t_max, t_end=t_end, dtype=dtype, device=device, starts=starts)
    if sampler not in DETERMINISTIC or sampler == "adaptive":
        raise DifflabError(
            f"grids are fitted to a deterministic fixed-grid sampler; {sampler!r} is not one "
            f"(choose from {', '.join(s for s in DETERMINISTIC if s != 'adaptive')})"
        )
    if isinstance(pilot, bool) or not isinstance(pilot, int) or pilot < 2:
        raise DifflabError(f"the pilot batch needs at least 2 samples; got {pilot!r}")
    options = dict(options or {})
    family = GridFamily(denoiser.process, steps, t_max, t_end)
    counted = CountingDenoiser(denoiser)
    receipt = {"sampler": sampler, "steps": steps, "pilot": pilot, "seed": seed, "max_evals": max_evals,
               "process": repr(denoiser.process), "options": options}
    if family.size == 0:
        return FittedGrid(family.times(np.zeros(0)), fit_nfe=0, pilot_rmse=math.nan, **receipt)
    fn = SAMPLERS[sampler]
    x_T, pilot_cond, exact = pilot_batch(counted, shape, pilot, seed, cond, t_max, t_end, dtype, device)

    def objective(theta: np.ndarray) -> float:
        try:
            with torch.no_grad():
                out = fn(counted, x_T, family.times(theta), cond=pilot_cond, **options)
        except DifflabError:  # a degenerate grid (two times collapse): reject it
            return 50.0
        mse = float((out - exact).to(f64).square().mean())
        return 0.5 * math.log(mse) if math.isfinite(mse) and mse > 0 else 50.0

    starts = [family.encode(a, b) for a, b in itertools.product((0.25, 0.4, 0.55), (0.35, 0.55, 0.75, 0.95))]
    if not family.has_a:
        starts = starts[:4]
    scored = [(objective(theta), theta) for theta in starts]
    best_fun, best = min(scored, key=lambda s: s[0])
    result = minimize(objective, best, method="Nelder-Mead", options={"maxfev": max_evals, "xatol": 1e-3})
    if result.fun < best_fun:
        best_fun, best = float(result.fun), result.x
    return FittedGrid(family.times(best), fit_nfe=counted.nfe, pilot_rmse=math.exp(best_fun), **receipt)
