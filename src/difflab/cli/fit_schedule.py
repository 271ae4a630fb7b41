"""`difflab fit-schedule RUN`: fit a grid to a run's model once; `sample --schedule fitted` reuses it."""

from __future__ import annotations

from pathlib import Path

import typer

from difflab.cli.common import app, fail, run_job


@app.command("fit-schedule")
def fit_schedule(
    run: Path = typer.Argument(..., help="A run folder written by `difflab train`."),
    steps: int = typer.Option(..., help="Sampler steps the grid is fitted for."),
    sampler: str = typer.Option("unipc", help="Sampler the grid is fitted for (deterministic for the ODE fit, any "
                                "with --metric); 'bespoke' fits the grid and the weights of a linear multistep solver "
                                "by gradient descent."),
    pilot: int = typer.Option(None, help="Pilot batch size (default 128; with --metric, the samples scored per "
                              "grid, default 1000)."),
    max_evals: int = typer.Option(150, "--max-evals", help="Solver runs of the Nelder-Mead search (bespoke: gradient iterations)."),
    seed: int = typer.Option(None, help="Seed of the pilot batch (default 0; with --metric 1000, away from "
                             "eval's seed 0, so the times are not chosen on the noises they are scored on)."),
    ema: bool = typer.Option(True, "--ema/--no-ema", help="Fit to the EMA weights."),
    device: str = typer.Option(None, help="cpu or cuda (default: cuda when available)."),
    start_schedule: list[str] = typer.Option(None, "--start-schedule", help="The grid the fit starts from (bespoke: "
                                             "default the process's grid for deis, repeatable for several starts, "
                                             "the lowest fitting loss kept; --metric: default the run's grid)."),
    start_weights: list[str] = typer.Option(None, "--start-weights", help="Bespoke only: the weights its fit starts "
                                            "from, deis (default) or ipndm; repeatable, paired with --start-schedule "
                                            "in order (one value applies to every start)."),
    metric: str = typer.Option(None, help="Choose the times by a sample metric instead of the ODE endpoint "
                               "(fdd, fid, kdd, kid, sw2, mmd: Song et al.'s greedy search, for samplers with no "
                               "ODE endpoint such as consistency)."),
    pilot_seeds: int = typer.Option(1, "--pilot-seeds", help="With --metric: score each grid on this many pilot "
                                    "batches (seeds SEED, SEED+1, ...) and search on their mean metric."),
    rounds: int = typer.Option(2, help="With --metric: passes of the greedy search over the interior times."),
    start_option: list[str] = typer.Option(None, "--start-option", help="With --metric: a KEY=VALUE option of "
                                           "the start grid, e.g. t_max=0.9877 (repeatable)."),
):
    """Fit the step placement to RUN's model and sampler on a pilot batch (a one-time cost, reported) and
    save it as RUN/schedules/fitted-SAMPLER-STEPS.json. With --metric, choose the interior times by that metric
    of the samples (e.g. a consistency model's times by FDD) instead."""
    if metric is not None:
        from difflab.config.loader import parse_options
        from difflab.jobs.fit_times import METRIC_SEED, run_fit_times

        if start_weights:
            fail("--start-weights is the bespoke fit's: a --metric search moves times only")
        if len(start_schedule or []) > 1:
            fail("--metric searches from one start grid: give --start-schedule once")
        run_job(run_fit_times, run, steps=steps, sampler=sampler, metric=metric,
                pilot=1000 if pilot is None else pilot, seed=METRIC_SEED if seed is None else seed, seeds=pilot_seeds,
                rounds=rounds,
                start_schedule=start_schedule[0] if start_schedule else None, start_options=run_job(parse_options, start_option, "--start-option"),
                ema=ema, device=device, log=typer.echo)
        return
    if pilot_seeds != 1:
        fail("--pilot-seeds goes with --metric (the time search); the ODE fit's pilot is one batch of --pilot noises")
    if start_option:
        fail("--start-option goes with --metric (the time search); the ODE fit describes its grid itself")
    from difflab.jobs.fit_schedule import run_fit_schedule

    start = _starts(start_schedule or [], start_weights or [])
    run_job(run_fit_schedule, run, steps=steps, sampler=sampler, pilot=128 if pilot is None else pilot,
            seed=0 if seed is None else seed, max_evals=max_evals, ema=ema, device=device, start=start, log=typer.echo)


def _starts(schedules: list[str], weights: list[str]):
    """The bespoke fit's start(s) from the repeated options: None, one (grid, weights) pair, or a list of them
    (one value of either option applies to every start of the other)."""
    if not schedules and not weights:
        return None
    schedules, weights = schedules or [None], weights or ["deis"]
    if len(weights) == 1:
        weights = weights * len(schedules)
    if len(schedules) == 1:
        schedules = schedules * len(weights)
    if len(schedules) != len(weights):
        fail(f"{len(schedules)} --start-schedule and {len(weights)} --start-weights: give one of each per start, "
             "or one value for all")
    pairs = list(zip(schedules, weights, strict=True))
    return pairs[0] if len(pairs) == 1 else pairs
