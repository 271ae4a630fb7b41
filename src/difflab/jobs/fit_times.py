"""`difflab fit-schedule RUN --metric fdd`: choose a sampler's times by the quality of its samples.

For samplers with no ODE endpoint to fit to (multistep consistency sampling re-noises between steps;
Song et al. 2023, sec. 6, pick its times by a greedy search on FID), the grid is searched one interior time
at a time (difflab.sampling.time_search) on a sample metric: `pilot` samples from one seed (or the mean over
`seeds` consecutive seeds, whose pilot batches the search then fits less of the noise of), drawn on each
candidate grid and scored against the run's training data exactly as `difflab eval` scores them
(difflab.jobs.evaluate.evaluate_loaded). The result is saved where `fit-schedule` saves its grids, so
`difflab sample RUN --schedule fitted` and `difflab eval RUN --schedule fitted` reuse it, and its one-time
cost (every denoiser call of the search) is on the receipt.

The default seed (1000) is not eval's default seed (0): the times are chosen on other noises than the ones
`difflab eval` scores them on, so the search does not pick the noise of the scored samples.
"""

from __future__ import annotations

import time
from pathlib import Path

from difflab.jobs.evaluate import evaluate_loaded
from difflab.jobs.fit_schedule import FITTED, load_fitted_schedule, schedule_path
from difflab.jobs.generate import check_count, run_sample_keywords
from difflab.jobs.runs import load_run, torch_device
from difflab.sampling import DEFAULT, FittedGrid, default_schedule, make_grid, resolve_sampler
from difflab.sampling.time_search import FRACTIONS, greedy_time_search
from difflab.utils.errors import DifflabError, check_choice
from difflab.utils.files import atomic_write_json

#: sample metrics for which lower is better (distances to the data), the ones a search can minimize
DISTANCES = ("fdd", "fid", "kdd", "kid", "sw2", "mmd")
METRIC_SEED = 1000


def start_grid(loaded, sampler: str, steps: int, schedule: str | None, schedule_options: dict | None):
    """(times, description) of the search's start: the run's own grid (its options kept) or the named one,
    with the user's grid options over them; 'default' and 'fitted' resolved as `difflab sample` does."""
    s, process = loaded.config.sample, loaded.model.process
    name = s.schedule if schedule is None else schedule
    _, keywords = run_sample_keywords(s, sampler, schedule, None, schedule_options)
    if name == FITTED:
        if keywords:
            raise DifflabError("a fitted start grid takes no grid options (its times are fixed)")
        return load_fitted_schedule(loaded.checkpoint.parent, sampler, steps).times, "the run's fitted grid"
    if name == DEFAULT:
        name = default_schedule(process, sampler, steps)
    times = make_grid(process, name, steps, **keywords)
    return times, name + (f" ({', '.join(f'{k}={v}' for k, v in keywords.items())})" if keywords else "")


def run_fit_times(run: str | Path, *, steps: int, sampler: str, metric: str = "fdd", pilot: int = 1000,
                  seed: int = METRIC_SEED, seeds: int = 1, rounds: int = 2, start_schedule: str | None = None,
                  start_options: dict | None = None, ema: bool = True, device: str | None = None,
                  log=print) -> FittedGrid:
    """Search the interior times of a `steps`-step grid for `sampler` on RUN's model that minimize `metric`
    of `pilot` samples drawn from `seed` (averaged over seeds seed .. seed + seeds - 1; module docstring), and
    save the grid in the run folder."""
    metric = check_choice("--metric of a time search (a distance: lower is better)", metric, DISTANCES)
    check_count(pilot, "--pilot")
    check_count(seeds, "--pilot-seeds")
    pilot_seeds = list(range(seed, seed + seeds))
    device = torch_device(device)
    loaded = load_run(run, ema=ema, device=device)
    sampler = resolve_sampler(sampler, loaded.model.process, steps)
    options, _ = run_sample_keywords(loaded.config.sample, sampler, None, None, None)
    start, described = start_grid(loaded, sampler, steps, start_schedule, start_options)
    calls, began = [], time.perf_counter()

    def score_one(times, s: int) -> float:
        report = evaluate_loaded(loaded, n=pilot, sampler=sampler, steps=steps, schedule=times.tolist(), seed=s,
                                 metrics=[metric], device=str(device))
        if metric not in report.results:
            raise DifflabError(f"the evaluation gave no {metric!r} for this run (it gave "
                               f"{', '.join(sorted(report.results))}): search on one of those")
        calls.append(int(report.settings["nfe"]))
        return float(report.results[metric])

    def score(times) -> float:
        return sum(score_one(times, s) for s in pilot_seeds) / len(pilot_seeds)

    named = f"seed {seed}" if seeds == 1 else f"seeds {seed}..{seed + seeds - 1}"

    log(f"searching the {steps - 1} interior times of a {steps}-step {sampler} grid from {described} on the "
        f"{metric} of {pilot} samples ({named if seeds == 1 else 'the mean over ' + named}), {rounds} round(s) of {len(FRACTIONS)} candidates each")
    found = greedy_time_search(score, start, rounds=rounds, log=log)
    fitted = FittedGrid(found.times, sampler, steps, fit_nfe=sum(calls), pilot=pilot, seed=seed,
                        max_evals=found.evaluations, pilot_rmse=None, process=repr(loaded.model.process),
                        options=dict(options), start=described, metric=metric, metric_value=found.score)
    path = schedule_path(run, sampler, steps)
    atomic_write_json(path, {**fitted.to_dict(), "checkpoint": loaded.checkpoint.name, "ema": ema,
                             "seeds": pilot_seeds, "seconds": time.perf_counter() - began, "history": [{"times": t, metric: v} for t, v in found.history]})
    start_value = found.history[0][1]
    log(f"{metric} {start_value:.4g} on the start grid -> {found.score:.4g} at times "
        f"{', '.join(f'{t:.4f}' for t in found.times.tolist())} ({found.evaluations} grids scored, one-time "
        f"set-up {fitted.fit_nfe} denoiser calls on {pilot} samples); wrote {path}. Sample on it with "
        f"`difflab sample {run} --sampler {sampler} --steps {steps} --schedule {FITTED}`, and score it on other "
        f"noises than {named} (`difflab eval {run} --sampler {sampler} --steps {steps} --schedule {FITTED}`)")
    return fitted
