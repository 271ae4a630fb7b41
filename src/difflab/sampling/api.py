"""`sample()`: one entry point for every sampler, grid, seed and guidance choice.

    result = difflab.sample(denoiser, (64, 3, 32, 32), sampler="dpmpp_3m", steps=10, seed=0)
    result.x, result.nfe, result.trajectory

NFE is counted honestly by wrapping the denoiser: every call of the (possibly guided) denoiser is one
function evaluation, so a Heun step costs 2, the adaptive ODE reports scipy's count, and a grid fitted
inside the call (schedule='optimized') adds every call of its fit (result.fit_nfe says how many). Classifier-free
guidance evaluates the conditional and unconditional branches in ONE batched call, so it doubles the
batch, not the NFE (a network costs about twice as much per NFE under CFG).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from difflab.sampling.brownian import BrownianNoise
from difflab.sampling.core import Step
from difflab.sampling.counting import CountingDenoiser
from difflab.sampling.fitted import FittedGrid
from difflab.sampling.grids import GRIDS, check_steps, make_grid
from difflab.sampling.optimize import fit_grid
from difflab.sampling.registry import SAMPLERS, sampler_options
from difflab.utils.errors import DifflabError, check_choice
from difflab.utils.seeding import make_generator

NOISES = ("gaussian", "brownian")
DEFAULT = "default"  # the one word for "the library's default" (sampler and schedule), in code and configs
DEFAULT_SAMPLER = "unipc"  # on continuous processes; a discrete table has its own (default_sampler)
DEFAULT_SCHEDULE = DEFAULT
DEFAULT_STEPS = 20
SPECIAL_SCHEDULES = (DEFAULT, "optimized")
#: On a discrete table (DDPM's T steps): DEIS (order 3, time polynomial) on the time-quadratic grid below this
#: many steps, LMS (order 4 in sigma) on the 'linspace' spacing from it (docs/benchmarks.md, "A default for
#: discrete tables").
DISCRETE_MANY_STEPS = 100


class SampleResult(NamedTuple):
    """x: the samples; nfe: every denoiser call made for this result, a grid fit included; trajectory:
    (steps + 1, *x.shape) states at the grid times, x_T first (None unless asked for); times: the grid;
    fit_nfe: the part of nfe spent fitting the grid (schedule='optimized'; 0 for a grid fitted earlier,
    whose one-time cost is its own FittedGrid.fit_nfe)."""

    x: Tensor
    nfe: int
    trajectory: Tensor | None
    times: Tensor
    fit_nfe: int = 0


def _many_steps(process, steps: int | None) -> bool:
    return bool(getattr(process, "is_discrete", False)) and steps is not None and steps >= DISCRETE_MANY_STEPS


def default_sampler(process, steps: int | None = None) -> str:
    """The default sampler: UniPC (order 2 with its corrector) on continuous processes; on a discrete table
    `deis` below DISCRETE_MANY_STEPS steps and `lms` from there. On the DDPM table the best fixed
    configuration changes with the budget (docs/benchmarks.md, "A default for discrete tables": over the
    three exact mixtures at 10-100 NFE this pair is the steadiest measured, geometric mean 0.79x the best
    diffusers scheduler's error, where UniPC on uniform log-SNR is 4.8-47x behind at 30-100 NFE on the 64-D and
    256-D mixtures)."""
    if getattr(process, "is_discrete", False):
        return "lms" if _many_steps(process, steps) else "deis"
    return DEFAULT_SAMPLER


def resolve_sampler(sampler: str, process, steps: int | None = None) -> str:
    """`sampler` checked against the registry, 'default' resolved by default_sampler."""
    return default_sampler(process, steps) if sampler == DEFAULT else check_choice("sampler", sampler, SAMPLERS)


def default_schedule(process, sampler: str | None = None, steps: int | None = None) -> str:
    """The default grid: uniform in t when the process starts from pure noise (alpha(1) = 0, rectified flow: seed 003's
    grid; its log-SNR range is unbounded); on a discrete table the time-quadratic grid `polynomial` (rho = 2,
    DDIM's 'quad'), or the 'linspace' spacing for `lms` from DISCRETE_MANY_STEPS steps; else uniform in
    log-SNR. Each is the best fixed grid of the benchmark for its process (docs/benchmarks.md)."""
    if process.starts_from_pure_noise:
        return "uniform"
    if getattr(process, "is_discrete", False):
        return "linspace" if sampler == "lms" and _many_steps(process, steps) else "polynomial"
    return "logsnr"


def _grid(denoiser, schedule, steps, schedule_options, sampler, options, sample_shape, cond, dtype, device) -> Tensor:
    """The grid; schedule='optimized' fits one through `denoiser`, a counted wrapper, so its calls are in nfe."""
    if isinstance(schedule, FittedGrid):
        if schedule_options:
            raise DifflabError("a fitted grid takes no schedule_options (its times are fixed)")
        return schedule.check_use(denoiser.process, sampler, steps, options)
    if isinstance(schedule, str) and schedule == DEFAULT:
        schedule = default_schedule(denoiser.process, sampler, steps)
    if isinstance(schedule, str) and schedule == "optimized":
        return fit_grid(denoiser, steps, sampler, shape=sample_shape, options=options, cond=cond, dtype=dtype,
                        device=device, **(schedule_options or {})).times
    if isinstance(schedule, str) and schedule not in GRIDS:
        check_choice("schedule", schedule, (*GRIDS, *SPECIAL_SCHEDULES))
    return make_grid(denoiser.process, schedule, steps, **(schedule_options or {}))


def _generators(seed, generator, device) -> torch.Generator | list[torch.Generator] | None:
    if seed is not None and generator is not None:
        raise DifflabError("pass either seed or generator, not both")
    if generator is not None:
        return generator
    if seed is None:
        return None
    if isinstance(seed, Sequence) and not isinstance(seed, str):
        return [make_generator(int(s), device) for s in seed]
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DifflabError(f"seed must be an int, a list of ints (one per sample) or None; got {seed!r}")
    return make_generator(seed, device)


def _shape(shape_or_x) -> tuple[int, ...]:
    if isinstance(shape_or_x, Tensor):
        return tuple(shape_or_x.shape)
    try:
        shape = tuple(int(s) for s in shape_or_x)
    except (TypeError, ValueError) as err:
        raise DifflabError(f"pass x_T as a tensor or a shape tuple (B, ...); got {shape_or_x!r}") from err
    if len(shape) < 1 or min(shape) < 1:
        raise DifflabError(f"the sample shape must be (B, ...) with positive sizes; got {shape}")
    return shape


def _initial_noise(shape_or_x, std: float, gens, device, dtype) -> Tensor:
    if isinstance(shape_or_x, Tensor):
        return shape_or_x
    shape = _shape(shape_or_x)
    if isinstance(gens, list):
        if len(gens) != shape[0]:
            raise DifflabError(f"got {len(gens)} per-sample seeds for a batch of {shape[0]}")
        z = torch.stack([torch.randn(shape[1:], generator=g, device=device, dtype=dtype) for g in gens])
    else:
        z = torch.randn(shape, generator=gens, device=device, dtype=dtype)
    return z * std


def sample(
    denoiser,
    shape_or_x_T,
    *,
    sampler: str = DEFAULT,
    steps: int = DEFAULT_STEPS,
    schedule: str | Sequence[float] | Tensor | FittedGrid = DEFAULT_SCHEDULE,
    schedule_options: dict | None = None,
    seed: int | Sequence[int] | None = None,
    generator: torch.Generator | None = None,
    noise: str = "gaussian",
    cond=None,
    guidance: Callable | None = None,
    return_trajectory: bool = False,
    callback: Callable[[Step], None] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    **options,
) -> SampleResult:
    """Draw samples from `denoiser` by walking a time grid from noise (t = 1) to data (t = 0).

    shape_or_x_T: a shape (B, ...) — then x_T ~ N(0, sigma(ts[0])^2), which is N(0, prior_std^2) for a grid
    starting at t = 1, drawn from `seed` (an int, or one int per sample for EDM-style per-sample seeds) or
    `generator` — or x_T itself. schedule: a grid name (difflab.sampling.grids.GRIDS) with
    `schedule_options`, explicit descending times, 'default' (see `default_schedule`), a FittedGrid (fitted
    earlier by difflab.sampling.fit_grid or `difflab fit-schedule`, for this sampler, steps and options)
    or 'optimized' (fitted now, to this denoiser and sampler on a pilot batch, by fit_grid, whose options go
    in schedule_options; its calls are counted: result.nfe includes them and result.fit_nfe says how many,
    hundreds to thousands, so fit once with fit_grid and pass the FittedGrid when sampling repeatedly). guidance: a function denoiser -> guided denoiser
    (difflab.guidance.classifier_free(3.0) or classifier_guided(...)). noise='brownian' feeds the SDE samplers
    from a Brownian tree (same path for every step count; needs a seed). Remaining keywords go to the
    sampler (e.g. eta, order, s_churn); unknown ones are rejected with the list of valid ones.

    Default (sampler='default'): UniPC (order 2, with its corrector, which costs no NFE) on the default grid with
    20 steps on continuous processes, chosen from the benchmark in difflab.analysis.sampler_benchmark
    (docs/benchmarks.md): at 20 NFE it is the most accurate of 32 fixed-grid configurations on three of the
    four cases (2-D ring under VP and flow, 64-D mixture under flow) and within 1.25x of the best on the
    fourth. On a discrete table, DEIS / LMS by the number of steps (`default_sampler`). A fitted grid lowers the RMSE at
    a given sampling NFE (1.1-4.5x at 5 NFE in the benchmark) but its fit costs hundreds of calls: it pays
    only when it is fitted once and reused for many batches. sampler='bespoke' with a FittedGrid of
    fit_grid(..., 'bespoke') runs the weight table the fit holds (difflab.sampling.bespoke).
    """
    check_steps(steps)
    sampler = resolve_sampler(sampler, denoiser.process, steps)
    check_choice("noise", noise, NOISES)
    unknown = sorted(set(options) - sampler_options(sampler))
    if unknown:
        valid = ", ".join(sorted(sampler_options(sampler))) or "none"
        raise DifflabError(f"sampler {sampler!r} does not take the option(s) {unknown}; it takes: {valid}")
    if guidance is not None:
        denoiser = guidance(denoiser)
    counted = CountingDenoiser(denoiser)
    if device is None:
        device = shape_or_x_T.device if isinstance(shape_or_x_T, Tensor) else "cpu"
    grid_dtype = shape_or_x_T.dtype if isinstance(shape_or_x_T, Tensor) else dtype
    grid_options = {k: v for k, v in options.items() if k != "weights"}  # a bespoke table is the fit's, not its key
    ts = _grid(counted, schedule, steps, schedule_options, sampler, grid_options, _shape(shape_or_x_T)[1:], cond,
               grid_dtype, device)
    if isinstance(schedule, FittedGrid) and schedule.weights is not None and "weights" not in options:
        options = {**options, "weights": schedule.weights}
    fit_nfe = counted.nfe
    gens = _generators(seed, generator, device)
    std = float(denoiser.process.sigma(ts[:1]))
    x_T = _initial_noise(shape_or_x_T, std, gens, device, dtype)
    if noise == "brownian":
        if seed is None:
            seed = int(torch.randint(0, 2**62, (), generator=generator))
        gens = BrownianNoise(x_T, seed)
    trajectory: list[Tensor] = [x_T] if return_trajectory else []

    def report(step: Step) -> None:
        if return_trajectory:
            trajectory.append(step.x)
        if callback is not None:
            callback(step)

    x = SAMPLERS[sampler](counted, x_T, ts, cond=cond, generator=gens, callback=report, **options)
    traj = torch.stack(trajectory) if return_trajectory else None
    return SampleResult(x, counted.nfe, traj, ts, fit_nfe)
