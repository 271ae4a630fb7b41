"""The `difflab` command: thin typer commands that parse arguments and call a job.

train / sample / demo live here; eval, bench and train-classifier in their own modules, registered below.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import typer

from difflab import __version__
from difflab.cli.common import THREADS, app, expand, fail, run_job, use_threads


def _version(value: bool):
    if value:
        typer.echo(f"difflab {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version.")):
    """difflab: diffusion and flow models, to the formula."""
    from difflab.utils.allocator import keep_freed_memory

    keep_freed_memory()


@app.command()
def train(
    config: str = typer.Argument(None, help="A preset (digits, toy2d, folder, ...) or a YAML config file."),
    out: Path = typer.Option(None, "--out", help="Run folder (default runs/<preset>)."),
    minutes: float = typer.Option(None, help="Wall-clock budget in minutes; with --resume, minutes more."),
    steps: int = typer.Option(None, help="Number of optimizer steps; with --resume, steps more."),
    set_: list[str] = typer.Option([], "--set", help="Override a config value: section.key=value (repeatable)."),
    threads: int = THREADS,
    resume: bool = typer.Option(False, help="Continue the run in --out from its newest intact checkpoint."),
):
    """Train a model from a preset or config file; Ctrl-C saves a checkpoint, --resume continues it.

    --resume alone trains what is left of the budget the run was started with.

    --resume with --minutes M / --steps N trains M minutes / N steps more (the other sets no limit).
    """
    from difflab.jobs.train import run_train

    if config is None and out is None:
        fail("name a preset or config (e.g. `difflab train digits`), or --out RUN --resume")
    if minutes is not None and not (math.isfinite(minutes) and minutes > 0):
        fail(f"--minutes must be a positive number of minutes; got {minutes}")
    if steps is not None and steps < 1:
        fail(f"--steps must be a whole number of optimizer steps >= 1; got {steps}")
    out = Path("runs") / Path(str(config)).stem if out is None else expand(out)
    use_threads(threads)
    run_job(run_train, config, out, minutes=minutes, steps=steps, overrides=set_, resume=resume)


@app.command()
def sample(
    run: Path = typer.Argument(..., help="A run folder written by `difflab train`, or a diffusers model folder / "
                               "cached hub id (docs/diffusers.md)."),
    out: Path = typer.Option(None, "--out", help="Grid PNG (vector data: a plot, .png/.pdf/.svg) to write; default "
                             "samples.png, none when only --save-array is given."),
    grid: bool = typer.Option(True, "--grid/--no-grid", help="Write the picture (--no-grid: only --save-array)."),
    n: int = typer.Option(None, help="Number of samples (default: the run's sample.n)."),
    sampler: str = typer.Option(None, help="Sampler name (default: the run's)."),
    steps: int = typer.Option(None, help="Sampler steps (default: the run's)."),
    schedule: str = typer.Option(None, help="Time grid name: uniform, logsnr, karras, shift, trailing, ..., or fitted "
                                 "(the grid `difflab fit-schedule` saved for this sampler and steps); default: the run's."),
    option: list[str] = typer.Option([], "--option", help="A sampler option KEY=VALUE, e.g. eta=0.5, order=3, "
                                     "s_churn=10 (repeatable; checked against the sampler's own options)."),
    schedule_option: list[str] = typer.Option([], "--schedule-option", help="A time-grid option KEY=VALUE, e.g. "
                                              "rho=7, shift=3, t_max=0.999 (repeatable)."),
    seed: int = typer.Option(None, help="Random seed."),
    ema: bool = typer.Option(True, "--ema/--no-ema", help="Use the EMA weights."),
    class_: list[int] = typer.Option(None, "--class", help="Class label(s) for a class-conditional model."),
    prompt: str = typer.Option(None, help="Text prompt for a text-conditional model."),
    negative: str = typer.Option(None, help="Negative prompt: the unconditional branch of guidance (needs "
                                 "--guidance W, W != 1)."),
    guidance: float = typer.Option(None, help="Classifier-free guidance weight w (1 = none)."),
    classifier_scale: float = typer.Option(None, "--classifier-scale", help="Classifier guidance scale s toward "
                                           "--class with the run's classifier (`difflab train-classifier RUN`)."),
    save_array: Path = typer.Option(None, "--save-array", help="Also write the samples as .npy, in the data range "
                                    "(class labels, if any, beside it as NAME.labels.npy)."),
    device: str = typer.Option(None, help="cpu or cuda (default: cuda when available)."),
    checkpoint: int = typer.Option(None, "--checkpoint", help="Use ckpt-STEP instead of the newest intact "
                                   "checkpoint (e.g. one phase's student of a progressive run)."),
    threads: int = THREADS,
):
    """Sample a trained run and write a grid and/or the raw array."""
    from difflab.config.loader import parse_options
    from difflab.jobs.sample import run_sample

    def job():
        return run_sample(expand(run), out=expand(out), n=n, sampler=sampler, steps=steps, schedule=schedule,
                          seed=seed, ema=ema, labels=class_ or None, prompt=prompt, negative=negative,
                          guidance=guidance, save_array_path=expand(save_array), device=device,
                          classifier_scale=classifier_scale, grid=grid,
                          options=parse_options(option, "--option"),
                          schedule_options=parse_options(schedule_option, "--schedule-option"),
                          checkpoint=checkpoint)

    use_threads(threads)
    run_job(job)


@app.command()
def demo(
    out: Path = typer.Option(Path("outputs/demo"), help="Folder for the pictures."),
    minutes: float = typer.Option(4.0, help="Training budget for the digits model (on a rerun: minutes more)."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue the earlier demo's training run in "
                                "OUT/digits-run (--no-resume: refuse one that exists)."),
    threads: int = THREADS,
):
    """The main job on the bundled digits: forward-process pictures, train, sample, score."""
    from difflab.jobs.demo import run_demo

    use_threads(threads)
    run_job(run_demo, expand(out), minutes=minutes, resume=resume)


# Subcommands defined in their own modules register themselves on `app` when imported.
from difflab.cli import (  # noqa: E402, F401
    analyze,
    autoencoder,  # train-autoencoder, reconstruct
    average,
    bench,
    classifier,
    distill,
    edit,
    evaluate,
    fit_schedule,
    pipeline,  # seed 004's pipeline, stage by stage
    studio,
)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
