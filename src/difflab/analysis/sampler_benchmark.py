"""The sampler benchmark: every sampler x grid against the exact Gaussian-mixture denoiser.

For each case (a mixture under a process) and each (sampler, schedule, NFE):
* rmse: root-mean-square distance to the exact probability-flow endpoint from the same x_T (deterministic
  samplers only; the endpoint comes from the adaptive solver at tolerance 1e-8);
* sw2_ratio: sliced W2 between the samples and fresh exact samples, over the floor (the mean SW2 between
  independent exact sets of the same size): 1 is as good as exact sampling at this sample size.
Optimized grids are fitted on a pilot batch drawn with another seed than the evaluation batch, by
difflab.sampling.fit_grid, which counts every call of the fit: a row's `nfe` is the sampling calls of the
evaluation batch, its `fit_nfe` the one-time set-up calls of the fit (each on the whole pilot batch; 0
for fixed grids), and every table shows the set-up beside the figure it bought.
`per_step_overhead` times what a sampler adds per step to a denoiser that costs nothing.

The SW2 function is passed in (difflab.metrics.lowdim.sliced_wasserstein2 from the benchmark script):
analysis sits below metrics in the layer order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from difflab.analysis.gaussian_mixture import GaussianMixture, image_like_mixture, ring_mixture
from difflab.process import NoiseProcess, make_process
from difflab.sampling.core import GaussianNoise
from difflab.sampling.counting import CountingDenoiser
from difflab.sampling.grids import make_grid
from difflab.sampling.optimize import fit_grid
from difflab.sampling.registry import DETERMINISTIC, SAMPLERS

NFES = (5, 8, 10, 15, 20, 30, 50, 100)
SCHEDULES = ("uniform", "logsnr", "karras", "shift", "optimized")
#: label -> (sampler, options); the published solvers are the goal's baselines
CONFIGS: dict[str, tuple[str, dict]] = {
    "euler": ("euler", {}),
    "heun": ("heun", {}),
    "ddim": ("ddim", {}),
    "dpmpp_2m": ("dpmpp_2m", {}),
    "dpmpp_3m": ("dpmpp_3m", {}),
    "dpmpp_3m_published": ("dpmpp_3m", {"published": True}),
    "unipc": ("unipc", {}),
    "unipc_3": ("unipc", {"order": 3}),
    "deis": ("deis", {}),
    "deis_logrho": ("deis", {"basis": "logrho"}),
    "ipndm": ("ipndm", {}),
    "plms": ("plms", {}),
    "ddpm": ("ddpm", {}),
    "dpmpp_2m_sde": ("dpmpp_2m_sde", {}),
    "dpmpp_sde": ("dpmpp_sde", {}),
    "euler_maruyama": ("euler_maruyama", {}),
    "pc": ("pc", {}),
}
BASELINES = ("dpmpp_3m_published", "unipc")
OPTIMIZED = ("unipc", "dpmpp_3m", "dpmpp_2m")  # configs whose grid is also fitted (NFE <= optimize_up_to)
PARAMETERIZATIONS = {"ddpm": "eps", "vp": "eps", "ve": "x0", "flow": "velocity"}
Distance = Callable[[Tensor, Tensor, int, torch.Generator], float]


@dataclass(frozen=True)
class Case:
    """A mixture under a process, sampled through its exact denoiser in one parameterization."""

    name: str
    mixture: GaussianMixture
    process: NoiseProcess
    parameterization: str

    def denoiser(self):
        return self.mixture.denoiser(self.process, self.parameterization)


MIXTURES = ("ring", "image64")


def default_cases(processes: Iterable[str] = ("vp", "flow")) -> list[Case]:
    """The 2-D 8-Gaussians ring and a 64-D image-like mixture (MIXTURES) under each process."""
    mixtures = {"ring": ring_mixture(), "image64": image_like_mixture(dim=64, k=10, seed=0)}
    return [
        Case(f"{m}-{p}", mix, make_process(p), PARAMETERIZATIONS[p]) for p in processes for m, mix in mixtures.items()
    ]


def steps_for(sampler: str, nfe: int) -> int:
    """Steps that spend at most `nfe` evaluations (Heun and DPM-Solver++ SDE: 2 per step but 1 on the final
    jump to sigma = 0; the predictor-corrector: 2 per step; PLMS: one more than its steps)."""
    if sampler in ("heun", "dpmpp_sde"):
        return max(1, (nfe + 1) // 2)
    if sampler == "pc":
        return max(1, nfe // 2)
    if sampler == "plms":  # a Heun first step: N steps cost N + 1
        return max(1, nfe - 1)
    return nfe


def _grid_options(case: Case, sampler: str) -> dict:
    """The reverse SDE has an infinite drift at alpha = 0: its samplers start just below t = 1 there."""
    pure_noise = float(case.process.alpha(torch.tensor(1.0, dtype=torch.float64))) == 0.0
    return {"t_max": 0.999} if pure_noise and sampler in ("euler_maruyama", "pc") else {}


def run_case(
    case: Case,
    sw2: Distance,
    *,
    nfes: Iterable[int] = NFES,
    configs: Iterable[str] = tuple(CONFIGS),
    schedules: Iterable[str] = SCHEDULES,
    n: int = 512,
    pilot: int = 256,
    optimize_up_to: int = 20,
    max_evals: int = 100,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> list[dict]:
    """Rows {case, sampler, schedule, nfe, fit_nfe, pilot, rmse, sw2_ratio, nfe_budget, median_error}: nfe is
    the counted number of sampling calls, at most nfe_budget (Heun spends 2 per step); fit_nfe the counted
    calls of the grid's fit on a `pilot`-sample batch (0 for a fixed grid); rmse and median_error (the median
    over samples of the per-sample RMS error: a few trajectories that cross a boundary between modes at
    coarse steps dominate the RMSE) are None for stochastic samplers."""
    D = case.denoiser()
    dim = case.mixture.dim
    g = torch.Generator().manual_seed(seed)
    x_T = torch.randn(n, dim, generator=g, dtype=torch.float64) * case.process.prior_std()
    exact_end = SAMPLERS["adaptive"](D, x_T, torch.tensor([1.0, 0.0], dtype=torch.float64), rtol=1e-8, atol=1e-8)
    data = case.mixture.sample(n, g)[0]
    floor = sum(sw2(case.mixture.sample(n, g)[0], data, 128, torch.Generator().manual_seed(k)) for k in range(4)) / 4
    rows = []
    for label in configs:
        name, options = CONFIGS[label]
        for schedule in schedules:
            if schedule == "optimized" and label not in OPTIMIZED:
                continue
            for nfe in nfes:
                if schedule == "optimized" and nfe > optimize_up_to:
                    continue
                steps = steps_for(name, nfe)
                start = time.perf_counter()
                fit_nfe = 0
                if schedule == "optimized":
                    fitted = fit_grid(D, steps, name, shape=(dim,), options=options, pilot=pilot, seed=seed + 1,
                                      max_evals=max_evals, dtype=torch.float64)
                    ts, fit_nfe = fitted.times, fitted.fit_nfe
                else:
                    ts = make_grid(case.process, schedule, steps, **_grid_options(case, name))
                counted = CountingDenoiser(D)
                x = x_T * float(case.process.sigma(ts[:1])) / case.process.prior_std()
                out = SAMPLERS[name](counted, x, ts, generator=GaussianNoise(x, torch.Generator().manual_seed(seed + 2)),
                                     **options)
                err = (out - exact_end).square().mean(1)  # per-sample mean squared error
                rmse = float(err.mean().sqrt()) if name in DETERMINISTIC else None
                median = float(err.median().sqrt()) if name in DETERMINISTIC else None
                ratio = sw2(out, data, 128, torch.Generator().manual_seed(0)) / floor
                rows.append({"case": case.name, "sampler": label, "schedule": schedule, "nfe": counted.nfe,
                             "fit_nfe": fit_nfe, "pilot": pilot if fit_nfe else 0, "rmse": _finite(rmse), "sw2_ratio": _finite(ratio), "nfe_budget": nfe,
                             "median_error": _finite(median)})
                if log is not None:
                    log(f"{case.name} {label} {schedule} nfe={counted.nfe} fit_nfe={fit_nfe} rmse={rmse} sw2x={ratio:.3g} "
                        f"({time.perf_counter() - start:.1f}s)")
    return rows


def _finite(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else v


def goal_summary(rows: list[dict], nfes: Iterable[int] | None = None) -> list[dict]:
    """Per case and NFE, by RMSE: the best published baseline (DPM-Solver++ 3M as published, UniPC, on any
    fixed grid), the best difflab configuration on a fixed grid (same budget, nothing else spent), and the
    best on a fitted grid with its one-time set-up cost (fit_nfe calls on a pilot batch) stated beside it;
    gain = baseline RMSE / fixed-grid best RMSE, fitted_gain the same for the fitted grid. nfes: the
    budgets to report (default: every budget in rows)."""
    out = []
    for case in sorted({r["case"] for r in rows}):
        for nfe in sorted({r["nfe_budget"] for r in rows}) if nfes is None else nfes:
            cands = [r for r in rows if r["case"] == case and r["rmse"] is not None and r["nfe_budget"] == nfe]
            fixed = [r for r in cands if r["schedule"] != "optimized"]
            base = [r for r in fixed if r["sampler"] in BASELINES]
            if not base:
                continue
            b = min(base, key=lambda r: r["rmse"])
            best = min(fixed, key=lambda r: r["rmse"])
            fits = [r for r in cands if r["schedule"] == "optimized"]
            fit = min(fits, key=lambda r: r["rmse"]) if fits else None
            out.append({"case": case, "nfe": nfe, "baseline": f"{b['sampler']} / {b['schedule']}",
                        "baseline_rmse": b["rmse"], "best": f"{best['sampler']} / {best['schedule']}",
                        "best_rmse": best["rmse"], "gain": b["rmse"] / best["rmse"],
                        "fitted": fit and fit["sampler"], "fitted_rmse": fit and fit["rmse"],
                        "fit_nfe": fit and fit["fit_nfe"], "pilot": fit and fit["pilot"],
                        "fitted_gain": fit and b["rmse"] / fit["rmse"]})
    return out


def markdown_tables(rows: list[dict], goal: list[dict], overhead: dict[str, tuple[float, float]] | None) -> str:
    """The results as markdown: RMSE and SW2-ratio tables per case, the goal check, per-step overhead."""
    lines = []
    for case in sorted({r["case"] for r in rows}):
        sub = [r for r in rows if r["case"] == case]
        nfes = sorted({r["nfe_budget"] for r in sub})
        for metric, title in (("rmse", "RMSE to the exact ODE endpoint"), ("sw2_ratio", "SW2 / floor")):
            keys = sorted({(r["sampler"], r["schedule"]) for r in sub if r[metric] is not None},
                          key=lambda k: (list(CONFIGS).index(k[0]), SCHEDULES.index(k[1])))
            if not keys:
                continue
            lines += [f"### {case}: {title} (NFE: sampling calls; '+k set-up': a fitted grid's one-time fit)", "",
                      "| sampler | schedule | " + " | ".join(f"NFE<={k}" for k in nfes) + " |",
                      "|---|---|" + "---|" * len(nfes)]
            for sampler, schedule in keys:
                cells = {r["nfe_budget"]: _cell(r[metric], r.get("fit_nfe", 0)) for r in sub
                         if (r["sampler"], r["schedule"]) == (sampler, schedule)}
                lines.append(f"| {sampler} | {schedule} | " + " | ".join(cells.get(k, "-") for k in nfes) + " |")
            lines.append("")
    if goal:
        lines += ["### Goal: best difflab configuration vs the best published solver (sampling NFE; a fitted "
                  "grid's one-time set-up in its own column)", "",
                  "| case | NFE | published (best fixed grid) | RMSE | difflab best fixed grid | RMSE | gain | "
                  "difflab fitted grid | RMSE | gain | set-up: fit calls x pilot batch |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for g in goal:
            fitted = (f"{g['fitted']} / optimized | {g['fitted_rmse']:.3g} | {g['fitted_gain']:.2f}x | "
                      f"{g['fit_nfe']} x {g['pilot']}") if g["fitted"] else "- | - | - | -"
            lines.append(f"| {g['case']} | {g['nfe']} | {g['baseline']} | {g['baseline_rmse']:.3g} | {g['best']} | "
                         f"{g['best_rmse']:.3g} | {g['gain']:.2f}x | {fitted} |")
        lines.append("")
    if overhead:
        lines += ["### Per-step overhead (64x3x32x32, CPU, denoiser returns a precomputed tensor)", "",
                  "| sampler | ms / step | of which noise draws |", "|---|---|---|"]
        lines += [f"| {k} | {v[0]:.3f} | {v[1]:.3f} |" for k, v in overhead.items()]
        lines.append("")
    return "\n".join(lines)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def _cell(v: float | None, fit_nfe: int) -> str:
    """A table cell: the figure, and for a fitted grid the set-up calls that bought it."""
    return _fmt(v) + (f" (+{fit_nfe} set-up)" if fit_nfe and v is not None else "")


class _ConstantDenoiser:
    """Returns a precomputed eps tensor: the sampler's own arithmetic is all that is timed."""

    parameterization = "eps"

    def __init__(self, process: NoiseProcess, value: Tensor):
        self.process, self.value = process, value

    def __call__(self, x: Tensor, t: Tensor, cond=None) -> Tensor:
        return self.value


class _CountingNoise(GaussianNoise):
    def __init__(self, like: Tensor, generator: torch.Generator):
        super().__init__(like, generator)
        self.calls = 0

    def __call__(self, t: float, t_next: float) -> Tensor:
        self.calls += 1
        return super().__call__(t, t_next)


def per_step_overhead(
    configs: Iterable[str] = tuple(CONFIGS), shape=(64, 3, 32, 32), steps: int = 50, repeats: int = 5
) -> dict[str, tuple[float, float]]:
    """label -> (milliseconds per step, of which drawing the step's Gaussian noise), float32 on CPU; the
    fastest of `repeats` runs, so that other work on the machine inflates it as little as possible."""
    process = make_process("vp")
    g = torch.Generator().manual_seed(0)
    x, value = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    D = _ConstantDenoiser(process, value)
    ts = make_grid(process, "logsnr", steps)
    start = time.perf_counter()
    for _ in range(20):
        torch.randn(shape, generator=g)
    randn_ms = (time.perf_counter() - start) / 20 * 1e3
    out = {}
    for label in configs:
        name, options = CONFIGS[label]
        noise = _CountingNoise(x, torch.Generator().manual_seed(0))
        SAMPLERS[name](D, x, ts, generator=noise, **options)  # warm-up, and count the noise draws
        draws = noise.calls
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            SAMPLERS[name](D, x, ts, generator=torch.Generator().manual_seed(0), **options)
            best = min(best, time.perf_counter() - start)
        out[label] = (best / steps * 1e3, draws / steps * randn_ms)
    return out
