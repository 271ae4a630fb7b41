"""`difflab train-classifier RUN`: the noise-aware classifier for classifier guidance (`sample --classifier-scale`)."""

from __future__ import annotations

from pathlib import Path

import typer

from difflab.cli.common import app, run_job


@app.command("train-classifier")
def train_classifier(
    run: Path = typer.Argument(..., help="A run folder written by `difflab train` (its data must have labels)."),
    minutes: float = typer.Option(None, help="Wall-clock budget in minutes."),
    steps: int = typer.Option(None, help="Number of optimizer steps."),
    set_: list[str] = typer.Option([], "--set", help="Override a classifier setting: key=value, e.g. train.lr=1e-3, "
                                   "options.base_channels=16, eval_times=[0,0.5] (repeatable)."),
    resume: bool = typer.Option(False, help="Continue RUN/classifier from its last checkpoint."),
):
    """Train the guidance classifier p(y | x_t, t) of a run into RUN/classifier and report its accuracy."""
    from difflab.jobs.classifier import run_train_classifier

    run_job(run_train_classifier, run, minutes=minutes, steps=steps, overrides=set_, resume=resume)
