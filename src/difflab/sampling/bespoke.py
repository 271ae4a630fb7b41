"""A bespoke linear multistep solver: DEIS's update with every weight learned (fitted by
difflab.sampling.bespoke_fit).

The linear-multistep family (difflab.sampling.deis) integrates the probability-flow ODE in DDIM's variables,
x~ = x / alpha against rho = sigma / alpha, from eps estimates; DEIS, iPNDM and PLMS differ only in the
weights they put on the eps history. The bespoke solver keeps the form and leaves the weights free:

    x_{i+1} = (alpha_{i+1} / alpha_i) x_i + alpha_{i+1} (rho_{i+1} - rho_i) sum_{j=0..i} b_ij eps_{i-j},

b an n x n lower-triangular table (row i: step i, column j: the lag), normalized by the step so that a
consistent method has sum_j b_ij = 1 (b = Adams-Bashforth weights is iPNDM; b_ij = C_ij / (rho_{i+1} -
rho_i) with DEIS's C is DEIS). The step from alpha = 0 (rectified flow at t = 1, rho = inf) is DDIM with the x0
estimate, as in the rest of the family, and has no weights. Fitting the grid and b to a denoiser on a pilot
batch is the idea of bespoke / learned solvers (Shaul et al. 2024, 'Bespoke Non-Stationary Solvers for Fast
Sampling of Diffusion and Flow Models', ICML; Tong et al. 2025, 'Learning to Discretize Denoising Diffusion
ODEs', ICLR): the few-step error of a fixed method is a property of the data, and a few dozen numbers fitted
to it remove most of it. 1 NFE per step.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from difflab.sampling.core import Run
from difflab.sampling.deis import ADAMS_BASHFORTH, _orders, _plan, _rho, deis_weights
from difflab.sampling.linear import run_linear
from difflab.utils.errors import DifflabError, check_choice

INIT_ORDER = 3
#: the methods a weight table can start from (`start_weights`): DEIS order 3 in t, or iPNDM's Adams-Bashforth
START_WEIGHTS = ("deis", "ipndm")


def check_weights(weights, steps: int) -> Tensor:
    """The weight table as a float64 (steps, steps) tensor, zero above the diagonal; one message otherwise."""
    try:
        b = torch.as_tensor(weights, dtype=torch.float64)
    except (TypeError, ValueError) as err:
        raise DifflabError(f"the bespoke weights must be a square table of numbers; got {err}") from None
    if b.shape != (steps, steps):
        raise DifflabError(f"the bespoke weights must be a {steps} x {steps} table for a {steps}-step grid; "
                           f"got shape {tuple(b.shape)}")
    if not bool(torch.isfinite(b).all()):
        raise DifflabError("the bespoke weights hold a non-finite number: fit them again")
    return torch.tril(b)


def initial_weights(run: Run) -> Tensor:
    """The table of DEIS (order 3, time polynomial, lower orders at the end) on run's grid: where a fit starts,
    and what `bespoke` runs without fitted weights."""
    rho, b = _rho(run), torch.zeros(run.n, run.n, dtype=torch.float64)
    for i, row in enumerate(deis_weights(run, INIT_ORDER, "t", True)):
        for j, w in enumerate(row):
            b[i, j] = w / (rho[i + 1] - rho[i])
    return b


def ipndm_table(run: Run) -> Tensor:
    """The table of iPNDM (difflab.sampling.deis.ipndm: Adams-Bashforth up to order 4, lower orders while
    warming up) on run's grid: b_ij = AB_j of the step's order, the same for every grid."""
    b, orders = torch.zeros(run.n, run.n, dtype=torch.float64), _orders(run.n, 4, False)
    for i, rho_i in enumerate(_rho(run)[:-1]):
        if math.isfinite(rho_i):  # the step from rho = inf is DDIM's, without weights
            b[i, : orders[i]] = torch.tensor(ADAMS_BASHFORTH[orders[i] - 1], dtype=torch.float64)
    return b


def start_table(run: Run, method: str = "deis") -> Tensor:
    """The weight table of `method` (START_WEIGHTS) on run's grid: where a fit starts."""
    check_choice("start_weights", method, START_WEIGHTS)
    return initial_weights(run) if method == "deis" else ipndm_table(run)


def bespoke(denoiser, x: Tensor, ts, *, cond=None, generator=None, callback=None, weights=None) -> Tensor:
    """The linear multistep update of the module doc with the fitted weight table `weights` (n x n for an
    n-step grid; row i, lag j), usually passed by difflab.sample from a fitted grid (fit_grid(..., 'bespoke')
    or `difflab fit-schedule RUN --sampler bespoke`); None: `initial_weights`, i.e. DEIS. 1 NFE per step."""
    run = Run(denoiser, x, ts, cond=cond, generator=generator, callback=callback)
    b = (initial_weights(run) if weights is None else check_weights(weights, run.n)).tolist()
    rho = _rho(run)
    table = [[(rho[i + 1] - rho[i]) * b[i][j] for j in range(i + 1)] if math.isfinite(rho[i]) else []
             for i in range(run.n)]
    return run_linear(run, _plan(run, table))
