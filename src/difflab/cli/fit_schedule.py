"""`difflab fit-schedule RUN`: fit a grid to a run's model once; `sample --schedule fitted` reuses it."""

from __future__ import annotations

from pathlib import Path

import typer

from difflab.cli.common import app, run_job


@app.command("fit-schedule")
def fit_schedule(
    run: Path = typer.Argument(..., help="A run folder written by `difflab train`."),
    steps: int = typer.Option(..., help="Sampler steps the grid is fitted for."),
    sampler: str = typer.Option("unipc", help="Deterministic sampler the grid is fitted for; 'bespoke' fits the "
                                "grid and the weights of a linear multistep solver by gradient descent."),
    pilot: int = typer.Option(128, help="Pilot batch size."),
    max_evals: int = typer.Option(150, "--max-evals", help="Solver runs of the Nelder-Mead search (bespoke: gradient iterations)."),
    seed: int = typer.Option(0, help="Seed of the pilot batch."),
    ema: bool = typer.Option(True, "--ema/--no-ema", help="Fit to the EMA weights."),
    device: str = typer.Option(None, help="cpu or cuda (default: cuda when available)."),
    start_schedule: str = typer.Option(None, "--start-schedule", help="Bespoke only: the grid its fit starts "
                                       "from (default: the process's grid for deis)."),
    start_weights: str = typer.Option(None, "--start-weights", help="Bespoke only: the weights its fit starts "
                                      "from, deis (default) or ipndm."),
):
    """Fit the step placement to RUN's model and sampler on a pilot batch (a one-time cost, reported) and
    save it as RUN/schedules/fitted-SAMPLER-STEPS.json."""
    from difflab.jobs.fit_schedule import run_fit_schedule

    start = None if start_schedule is None and start_weights is None else (start_schedule, start_weights or "deis")
    run_job(run_fit_schedule, run, steps=steps, sampler=sampler, pilot=pilot, seed=seed, max_evals=max_evals,
            ema=ema, device=device, start=start, log=typer.echo)
