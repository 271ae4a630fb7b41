"""`difflab pipeline RUN --prompt ... --out DIR`: seed 004's Stable Diffusion steps one by one, as pictures."""

from __future__ import annotations

from pathlib import Path

import typer

from difflab.cli.common import THREADS, app, expand, run_job, use_threads


@app.command()
def pipeline(
    run: Path = typer.Argument(..., help="A text-conditional run folder (e.g. `difflab train shapes-latent`)."),
    prompt: str = typer.Option(..., help="The text prompt."),
    out: Path = typer.Option(Path("pipeline"), "--out", help="Folder for the stage pictures and pipeline.json."),
    steps: int = typer.Option(None, help="Sampler steps (default: the run's)."),
    guidance: float = typer.Option(None, help="Classifier-free guidance weight w (default: the run's)."),
    seed: int = typer.Option(0, help="Seed of the latent noise."),
    negative: str = typer.Option(None, "--negative-prompt", "--negative", help="Negative prompt: the unconditional "
                                 "branch of guidance (needs w != 1)."),
    frames: int = typer.Option(6, help="Denoising steps shown in the strip of x0 estimates."),
    sampler: str = typer.Option(None, help="Sampler name (default: the run's)."),
    device: str = typer.Option(None, help="cpu or cuda (default: cuda when available)."),
    threads: int = THREADS,
):
    """Tokenize, encode the prompt, draw latent noise, denoise with CFG, decode: each stage a labelled picture
    in OUT (1_tokens.png ... 5_image.png) and the numbers in OUT/pipeline.json."""
    from difflab.jobs.pipeline import run_pipeline

    use_threads(threads)
    run_job(run_pipeline, expand(run), prompt, out_dir=expand(out), steps=steps, guidance=guidance, seed=seed,
            negative=negative, frames=frames, sampler=sampler, device=device, log=typer.echo)
