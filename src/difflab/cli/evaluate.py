"""`difflab eval`: score a run's samples against its training data, or two folders of images."""

from __future__ import annotations

from pathlib import Path

import typer

from difflab.cli.common import THREADS, app, expand, run_job, use_threads


@app.command("eval")
def eval_(
    run: Path = typer.Argument(None, help="A run folder written by `difflab train` (or give --real and --fake)."),
    real: Path = typer.Option(None, "--real", help="Folder of real images (with --fake, instead of a RUN)."),
    fake: Path = typer.Option(None, "--fake", help="Folder of generated images (with --real)."),
    n: int = typer.Option(None, "--n", help="Samples to draw from the RUN (default: 2000)."),
    sampler: str = typer.Option(None, help="Sampler name (default: the run's)."),
    steps: int = typer.Option(None, help="Sampler steps (default: the run's)."),
    schedule: str = typer.Option(None, help="Time grid name (default: the run's)."),
    option: list[str] = typer.Option([], "--option", help="A sampler option KEY=VALUE, e.g. eta=0.5, order=3 "
                                     "(repeatable; over the run's sample.options, checked against the sampler's)."),
    schedule_option: list[str] = typer.Option([], "--schedule-option", help="A time-grid option KEY=VALUE, e.g. "
                                              "rho=7, shift=3 (repeatable; over the run's sample.schedule_options)."),
    seed: int = typer.Option(0, help="Seed; sample i gets its own generator, so results do not depend on --batch-size."),
    guidance: float = typer.Option(None, help="Classifier-free guidance weight w (default: the run's)."),
    batch_size: int = typer.Option(500, "--batch-size", help="Samples per batch (sampling and features)."),
    metrics: str = typer.Option(
        "auto", help="Comma-separated metrics (fdd, coverage, confidence, pr, memorization, fid, kid, is, sw2, mmd, "
        "nll, ...) or auto: chosen by the data (nll of a PixelCNN or VAE run; name it for a diffusion run)."
    ),
    n_real: int = typer.Option(None, "--n-real", help="Reference items (default: the whole training set; at most 10000 points for vector data)."),
    ema: bool = typer.Option(True, "--ema/--no-ema", help="Use the EMA weights."),
    device: str = typer.Option(None, help="cpu or cuda (default: cuda when available)."),
    inception: Path = typer.Option(None, help="Inception-v3 weights file for fid/kid/is (default: torch hub cache)."),
    is_splits: int = typer.Option(None, "--is-splits", help="Splits of the Inception Score (default 10; at most the "
                                  "number of generated images)."),
    json_path: Path = typer.Option(None, "--json", help="Write the results and the settings used as JSON."),
    method: str = typer.Option(None, "--method", help="nll of a diffusion run: ode (probability-flow ODE, the "
                               "default), elbo (continuous-time bound) or vlb (discrete DDPM bound, process ddpm)."),
    probes: int = typer.Option(None, "--probes", help="nll: Hutchinson probes of the ODE (default: the exact "
                               "divergence up to 16 dims, else 4), draws per image of elbo (16) or vlb (1), "
                               "IWAE samples k of a VAE (100)."),
    split: str = typer.Option(None, "--split", help="nll on the data's held-out split (heldout, the default) or on "
                              "its training data (train)."),
    checkpoint: int = typer.Option(None, "--checkpoint", help="Use ckpt-STEP instead of the newest intact "
                                   "checkpoint (e.g. one phase's student of a progressive run)."),
    threads: int = THREADS,
):
    """Measure a trained run (difflab eval RUN) or two image folders (difflab eval --real DIR --fake DIR)."""
    from difflab.config.loader import parse_options
    from difflab.jobs.evaluate import run_eval

    use_threads(threads)

    def job():
        return run_eval(expand(run), real=expand(real), fake=expand(fake), n=n, sampler=sampler, steps=steps,
                        schedule=schedule, seed=seed, guidance=guidance, batch_size=batch_size, metrics=metrics,
                        n_real=n_real, ema=ema, device=device, inception=expand(inception), is_splits=is_splits,
                        json_path=expand(json_path), options=parse_options(option, "--option"),
                        schedule_options=parse_options(schedule_option, "--schedule-option"), method=method,
                        probes=probes, split=split, checkpoint=checkpoint)

    run_job(job)
