"""`difflab average RUN --out RUN2`: one set of sampling weights from several of RUN's checkpoints."""

from __future__ import annotations

from pathlib import Path

import typer

from difflab.cli.common import app, expand, run_job


@app.command("average")
def average(
    run: Path = typer.Argument(..., help="A run folder written by `difflab train` or `difflab distill`."),
    out: Path = typer.Option(..., "--out", help="The new run folder (refused if it holds a run)."),
    checkpoint: list[int] = typer.Option(None, "--checkpoint", help="A step whose checkpoint enters the average "
                                         "(repeatable; or use --from / --to)."),
    first: int = typer.Option(None, "--from", help="Average every checkpoint from this step (default: the first)."),
    last: int = typer.Option(None, "--to", help="... up to this step (default: the newest)."),
    weights: str = typer.Option("ema", help="Which weights to average: ema (the sampling weights) or model (the "
                                "raw trained weights)."),
    weighting: str = typer.Option("equal", help="Each checkpoint's share: equal (one per checkpoint) or steps "
                                  "(the training steps it stands for, trapezoid rule: for unevenly saved windows)."),
    half_life: float = typer.Option(None, "--half-life", help="Lean the mean toward the newest checkpoint: "
                                    "shares times 2^(-(newest step - step) / HALF_LIFE), in steps (default: none)."),
):
    """Average the weights of RUN's checkpoints into a new run (LAWA / LCSC-style checkpoint averaging): the
    mean is RUN2's sampling weights, so `difflab sample RUN2` and `difflab eval RUN2` use it."""
    from difflab.jobs.average import run_average

    run_job(run_average, expand(run), expand(out), steps=checkpoint or None, first=first, last=last,
            weights=weights, weighting=weighting, half_life=half_life, log=typer.echo)
