"""`difflab fit-schedule RUN`: fit a run's grid once, keep it in the run folder, reuse it by name.

    RUN/schedules/fitted-<sampler>-<steps>.json   the FittedGrid (times, what it was fitted for, its cost)

With --sampler bespoke the file also holds the bespoke solver's fitted weights (difflab.sampling.bespoke);
with --metric the times are chosen by a sample metric instead (difflab.jobs.fit_times), in the same file.
The fit (difflab.sampling.fit_grid) is a one-time set-up cost, fit_nfe denoiser calls on a pilot batch;
`difflab sample RUN --sampler S --steps N --schedule fitted` then samples on it at N calls per batch, and
reports the set-up beside that (`resolve_schedule` turns the name into the saved grid).
"""

from __future__ import annotations

import json
from pathlib import Path

from difflab.jobs.generate import build_cond
from difflab.jobs.runs import load_run, torch_device
from difflab.sampling import DEFAULT, DEFAULT_SAMPLER, FittedGrid, fit_grid
from difflab.utils.errors import DifflabError
from difflab.utils.files import atomic_write_json

FITTED = "fitted"


def schedule_path(run: str | Path, sampler: str, steps: int) -> Path:
    return Path(run) / "schedules" / f"fitted-{sampler}-{steps}.json"


def run_fit_schedule(run: str | Path, *, steps: int, sampler: str = DEFAULT_SAMPLER, pilot: int = 128,
                     seed: int = 0, max_evals: int = 150, ema: bool = True, device: str | None = None,
                     start: tuple[str | None, str] | None = None, log=print) -> FittedGrid:
    """Fit the grid of `steps` steps for `sampler` to RUN's model (EMA weights by default) on a pilot
    batch of `pilot` samples (a class model cycles through its classes) and save it in the run folder.
    start: the bespoke fit's (grid, weights) start (difflab.sampling.fit_grid)."""
    device = torch_device(device)
    loaded = load_run(run, ema=ema, device=device)
    cond = build_cond(loaded.model, loaded.meta, pilot, None, None, loaded.text_encoder, device)
    fitted = fit_grid(loaded.model, steps, sampler, shape=tuple(loaded.meta.data_shape), pilot=pilot, seed=seed,
                      max_evals=max_evals, cond=cond, device=device, start=start)
    path = schedule_path(run, sampler, steps)
    atomic_write_json(path, {**fitted.to_dict(), "checkpoint": loaded.checkpoint.name, "ema": ema})
    what = "grid and weights" if fitted.weights is not None else "grid"
    log(f"fitted a {steps}-step {what} for {sampler} to {loaded.checkpoint}: pilot RMSE {fitted.pilot_rmse:.4g} "
        f"to the exact ODE endpoint; one-time set-up {fitted.fit_nfe} denoiser calls on {pilot} samples; wrote "
        f"{path}. Sample on it with `difflab sample {run} --sampler {sampler} --steps {steps} --schedule {FITTED}`")
    return fitted


def load_fitted_schedule(run: str | Path, sampler: str, steps: int) -> FittedGrid:
    """The grid saved by `difflab fit-schedule RUN --steps N --sampler S`, with one message if there is none."""
    path = schedule_path(run, sampler, steps)
    if not path.is_file():
        raise DifflabError(f"{run} has no grid fitted for sampler {sampler!r} with {steps} steps: fit one with "
                           f"`difflab fit-schedule {run} --steps {steps} --sampler {sampler}`")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DifflabError(f"{path} is not readable JSON ({err}): fit it again with `difflab fit-schedule`") from None
    return FittedGrid.from_dict(data, where=str(path))


def resolve_schedule(run: str | Path, schedule, sampler: str, steps: int):
    """schedule 'fitted' -> the run's saved FittedGrid for (sampler, steps); anything else unchanged."""
    if schedule == FITTED:
        return load_fitted_schedule(run, DEFAULT_SAMPLER if sampler in (None, DEFAULT) else sampler, steps)
    return schedule
