"""`difflab distill RUN --method progressive|reflow|... --out RUN2`: a few-step student of a trained run."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from difflab.cli.common import THREADS, app, expand, fail, run_job, use_threads


@app.command()
def distill(
    run: Path = typer.Argument(None, help="The teacher: a run folder written by `difflab train` (not needed with "
                               "--resume)."),
    method: str = typer.Option(None, "--method", help="progressive (Salimans & Ho 2022), reflow (Liu et al. 2022), "
                               "consistency (Song et al. 2023), meanflow (Geng et al. 2025; a velocity teacher), or "
                               "another name in difflab.distill.registry.DISTILL_METHODS."),
    out: Path = typer.Option(..., "--out", help="The student's run folder."),
    minutes: float = typer.Option(None, help="Wall-clock budget in minutes; with --resume, minutes more."),
    steps: int = typer.Option(None, help="Optimizer steps (default: the method's schedule); with --resume, steps more."),
    set_: list[str] = typer.Option([], "--set", help="Override a value of the student's config: section.key=value, "
                                   "e.g. distill.options.phase_steps=200, train.lr=1e-4 (repeatable)."),
    threads: int = THREADS,
    resume: bool = typer.Option(False, help="Continue the distillation in --out (its teacher is re-loaded from the "
                                "path in its config)."),
):
    """Distil a trained run into a 1-4 step student that samples like any run (`difflab sample RUN2`)."""
    from difflab.jobs.distill import run_distill

    if not resume and (run is None or method is None):
        fail("name the teacher RUN and --method (e.g. `difflab distill runs/digits --method progressive --out "
             "runs/digits-pd`), or --out RUN2 --resume")
    if minutes is not None and not (math.isfinite(minutes) and minutes > 0):
        fail(f"--minutes must be a positive number of minutes; got {minutes}")
    if steps is not None and steps < 1:
        fail(f"--steps must be a whole number of optimizer steps >= 1; got {steps}")
    use_threads(threads)
    run_job(run_distill, expand(run), expand(out), method=method, minutes=minutes, steps=steps, overrides=set_,
            resume=resume)
