"""`difflab train-autoencoder` and `difflab reconstruct`: the autoencoder of latent diffusion
(`difflab eval AE_RUN` scores one: jobs/reconstruct.py)."""

from __future__ import annotations

from pathlib import Path

import typer

from difflab.cli.common import THREADS, app, expand, fail, run_job, use_threads


@app.command("train-autoencoder")
def train_autoencoder(
    config: str = typer.Argument(None, help="An autoencoder preset (shapes-kl, shapes-vq, folder-kl) or a YAML "
                                 "config file."),
    out: Path = typer.Option(None, "--out", help="Run folder (default runs/<preset>)."),
    minutes: float = typer.Option(None, help="Wall-clock budget in minutes; with --resume, minutes more."),
    steps: int = typer.Option(None, help="Number of optimizer steps; with --resume, steps more."),
    set_: list[str] = typer.Option([], "--set", help="Override a config value: section.key=value, e.g. "
                                   "objective.disc_weight=0, autoencoder.options.latent_channels=8 (repeatable)."),
    threads: int = THREADS,
    resume: bool = typer.Option(False, help="Continue the run in --out from its newest intact checkpoint."),
):
    """Train a KL-VAE or VQ-VAE / VQ-GAN; Ctrl-C saves a checkpoint, --resume continues it.

    Every checkpoint stores the latent scale (1 / std of the training latents) measured on its weights.
    """
    from difflab.jobs.train_autoencoder import run_train_autoencoder

    if config is None and out is None:
        fail("name an autoencoder preset or config (e.g. `difflab train-autoencoder shapes-kl`), or --out RUN --resume")
    out = Path("runs") / Path(str(config)).stem if out is None else expand(out)
    use_threads(threads)  # --minutes and --steps are checked by the job (jobs.train.budget)
    run_job(run_train_autoencoder, config, out, minutes=minutes, steps=steps, overrides=set_, resume=resume)


@app.command()
def reconstruct(
    run: Path = typer.Argument(..., help="An autoencoder run folder written by `difflab train-autoencoder`."),
    images: Path = typer.Option(..., "--images", help="Folder of images (PNG, JPEG, WebP; searched recursively)."),
    out: Path = typer.Option(Path("reconstructions.png"), "--out", help="Grid PNG to write: inputs above "
                             "their reconstructions."),
    size: int = typer.Option(None, help="Resize (shorter side) and centre-crop to SIZE pixels, as training data "
                             "is (default: the run's image size); a multiple of the autoencoder's factor f."),
    n: int = typer.Option(32, "--n", help="Images shown in the grid (the PSNR counts all of them)."),
    ema: bool = typer.Option(True, "--ema/--no-ema", help="Use the EMA weights."),
    device: str = typer.Option(None, help="cpu or cuda (default: cuda when available)."),
    threads: int = THREADS,
):
    """Reconstruct a folder of images with an autoencoder run: a grid and the PSNR / SSIM."""
    from difflab.jobs.reconstruct import run_reconstruct

    use_threads(threads)
    run_job(run_reconstruct, expand(run), expand(images), expand(out), size=size, n=n, ema=ema, device=device)
