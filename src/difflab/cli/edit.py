"""`difflab edit`, `inpaint`, `invert`, `interpolate`: editing with a trained run (difflab.jobs.edit)."""

from __future__ import annotations

from pathlib import Path

import typer

from difflab.cli.common import THREADS, app, expand, run_job, use_threads

RUN = typer.Argument(..., help="A run folder written by `difflab train`.")
IMAGE = typer.Option(..., "--image", help="Input picture (read like the run's training images) or .npy array.")
SAMPLER = typer.Option(None, help="Sampler name (default: the run's; any sampler works).")
STEPS = typer.Option(None, help="Steps of the full grid (default: the run's).")
SCHEDULE = typer.Option(None, help="Time grid name (default: the run's).")
OPTION = typer.Option([], "--option", help="A sampler option KEY=VALUE (repeatable).")
SCHEDULE_OPTION = typer.Option([], "--schedule-option", help="A time-grid option KEY=VALUE (repeatable).")
SEED = typer.Option(0, help="Random seed.")
CLASS = typer.Option(None, "--class", help="Class label for a class-conditional model.")
PROMPT = typer.Option(None, help="Text prompt for a text-conditional model.")
NEGATIVE = typer.Option(None, help="Negative prompt (needs --guidance W != 1).")
GUIDANCE = typer.Option(None, help="Classifier-free guidance weight w (1 = none).")
DEVICE = typer.Option(None, help="cpu or cuda (default: cuda when available).")
EMA = typer.Option(True, "--ema/--no-ema", help="Use the EMA weights.")


def _run(threads, job, *args, **kwargs):
    from difflab.config.loader import parse_options

    use_threads(threads)
    for key, flag in (("options", "--option"), ("schedule_options", "--schedule-option")):
        if key in kwargs:
            kwargs[key] = run_job(parse_options, kwargs[key], flag)
    run_job(job, *args, **kwargs)


@app.command()
def edit(
    run: Path = RUN,
    image: Path = IMAGE,
    out: Path = typer.Option(None, "--out", help="PNG grid: the input, then the edits."),
    strength: float = typer.Option(0.5, help="Noise level t in [0, 1] the input is taken to (0 keeps it, 1 ignores it)."),
    n: int = typer.Option(8, "--n", help="Number of edits."),
    sampler: str = SAMPLER,
    steps: int = typer.Option(None, help="Steps of the full grid; about strength x steps are taken."),
    schedule: str = SCHEDULE,
    option: list[str] = OPTION,
    schedule_option: list[str] = SCHEDULE_OPTION,
    seed: int = SEED,
    class_: list[int] = CLASS,
    prompt: str = PROMPT,
    negative: str = NEGATIVE,
    guidance: float = GUIDANCE,
    save_array: Path = typer.Option(None, "--save-array", help="Also write the edits as .npy."),
    device: str = DEVICE,
    ema: bool = EMA,
    threads: int = THREADS,
):
    """SDEdit / img2img: noise the input to t = strength and denoise it with any sampler."""
    from difflab.jobs.edit import run_edit

    _run(threads, run_edit, expand(run), image=expand(image), out=expand(out), strength=strength, n=n,
         sampler=sampler, steps=steps, schedule=schedule, seed=seed, labels=class_ or None, prompt=prompt,
         negative=negative, guidance=guidance, save_array_path=expand(save_array), device=device, ema=ema,
         options=option, schedule_options=schedule_option)


@app.command()
def inpaint(
    run: Path = RUN,
    image: Path = IMAGE,
    mask: Path = typer.Option(..., "--mask", help="PNG of the image's size, white = regenerate (or .npy of 0/1)."),
    out: Path = typer.Option(None, "--out", help="PNG grid: the input, its kept part, then the completions."),
    method: str = typer.Option("replace", help="replace (re-noise the known region every step) or repaint."),
    jump_length: int = typer.Option(5, "--jump-length", help="RePaint: steps per resampled block."),
    resample: int = typer.Option(5, help="RePaint: passes over each block."),
    n: int = typer.Option(8, "--n", help="Number of completions."),
    sampler: str = SAMPLER,
    steps: int = STEPS,
    schedule: str = SCHEDULE,
    option: list[str] = OPTION,
    schedule_option: list[str] = SCHEDULE_OPTION,
    seed: int = SEED,
    class_: list[int] = CLASS,
    prompt: str = PROMPT,
    negative: str = NEGATIVE,
    guidance: float = GUIDANCE,
    save_array: Path = typer.Option(None, "--save-array", help="Also write the completions as .npy."),
    paste: bool = typer.Option(True, "--paste/--no-paste", help="Latent runs: paste the kept pixels back from the "
                               "input (exactly the user's); --no-paste keeps the decoded picture whole."),
    device: str = DEVICE,
    ema: bool = EMA,
    threads: int = THREADS,
):
    """Fill the white part of the mask: the replacement method or RePaint resampling."""
    from difflab.jobs.edit import run_inpaint

    _run(threads, run_inpaint, expand(run), image=expand(image), mask=expand(mask), out=expand(out), method=method,
         jump_length=jump_length, resample=resample, n=n, sampler=sampler, steps=steps, schedule=schedule, seed=seed,
         labels=class_ or None, prompt=prompt, negative=negative, guidance=guidance,
         save_array_path=expand(save_array), paste=paste, device=device, ema=ema, options=option,
         schedule_options=schedule_option)


@app.command()
def invert(
    run: Path = RUN,
    image: Path = IMAGE,
    out: Path = typer.Option(..., "--out", help="The noise x_T as .npy."),
    reconstruct: bool = typer.Option(False, "--reconstruct", help="Also sample x_T back (OUT.reconstruction.png) "
                                     "and print the PSNR."),
    sampler: str = typer.Option("ddim", help="ddim, euler (first order) or heun (second order)."),
    steps: int = typer.Option(None, help="Steps (default: the run's)."),
    schedule: str = SCHEDULE,
    schedule_option: list[str] = SCHEDULE_OPTION,
    class_: list[int] = CLASS,
    prompt: str = PROMPT,
    guidance: float = GUIDANCE,
    device: str = DEVICE,
    ema: bool = EMA,
    threads: int = THREADS,
):
    """Deterministic (DDIM / probability-flow) inversion of an image to its noise, and back."""
    from difflab.jobs.edit import run_invert

    _run(threads, run_invert, expand(run), image=expand(image), out=expand(out), reconstruct_too=reconstruct,
         sampler=sampler, steps=steps, schedule=schedule, labels=class_ or None, prompt=prompt, guidance=guidance,
         device=device, ema=ema, schedule_options=schedule_option)


@app.command()
def interpolate(
    run: Path = RUN,
    seeds: tuple[int, int] = typer.Option(None, "--seeds", help="The two seeds A B whose noises are the ends."),
    images: tuple[Path, Path] = typer.Option(None, "--images", help="Or two images A B: their inverted noises "
                                             "are the ends (ddim, euler or heun)."),
    out: Path = typer.Option(..., "--out", help="strip.png or animation.gif."),
    frames: int = typer.Option(8, help="Frames from A to B."),
    class_: list[int] = typer.Option(None, "--class", help="One class, or two (repeat --class): the condition "
                                     "moves from the first to the second."),
    prompt: list[str] = typer.Option(None, "--prompt", help="One prompt, or two (repeat --prompt)."),
    sampler: str = typer.Option(None, help="Sampler name (default: the run's; a deterministic one keeps the path smooth)."),
    steps: int = STEPS,
    schedule: str = SCHEDULE,
    option: list[str] = OPTION,
    schedule_option: list[str] = SCHEDULE_OPTION,
    guidance: float = GUIDANCE,
    device: str = DEVICE,
    ema: bool = EMA,
    threads: int = THREADS,
):
    """Samples along the great circle between two seeds' noises (and between two conditions)."""
    from difflab.jobs.edit import run_interpolate

    _run(threads, run_interpolate, expand(run), seeds=None if seeds is None else list(seeds),
         images=None if images is None else [expand(p) for p in images], out=expand(out), frames=frames, labels=class_ or None,
         prompts=prompt or None, sampler=sampler, steps=steps, schedule=schedule, guidance=guidance, device=device,
         ema=ema, options=option, schedule_options=schedule_option)
