"""`difflab sample`: load a run, draw samples, write a grid and/or the raw array (and its labels).

    --out x.png          the grid (images) or scatter plot (vectors); default samples.png unless only an
                         array is asked for (--save-array without --out, or --no-grid)
    --save-array x.npy   the samples (n, *data_shape) float32 in the data range; a class-conditional run
                         (or classifier guidance toward --class) also writes x.labels.npy, (n,) int64;
                         a latent run's samples are decoded: the pixels (n, *image_shape) in [-1, 1]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console

from difflab.baselines.base import Baseline
from difflab.jobs.baselines import check_sampling_options
from difflab.jobs.classifier import load_run_classifier
from difflab.jobs.fit_schedule import resolve_schedule
from difflab.jobs.generate import check_count, generate, resolve_device, run_sample_keywords
from difflab.jobs.runs import load_run
from difflab.sampling import FittedGrid
from difflab.utils.errors import DifflabError
from difflab.utils.files import atomic_write
from difflab.viz import plot_points, save_image_grid

GRID_SUFFIXES = (".png",)  # save_image_grid writes PNG
PLOT_SUFFIXES = (".png", ".pdf", ".svg")  # matplotlib picks the format by suffix


def save_array(x, path: Path) -> Path:
    """Write a tensor as .npy atomically (float samples as float32, labels as int64)."""
    array = x.detach().cpu()
    array = array.long().numpy() if not array.is_floating_point() else array.float().numpy()
    return atomic_write(path, lambda tmp: np.save(tmp, array))


def labels_path(array_path: Path) -> Path:
    """Where the labels of `x.npy` go: `x.labels.npy` beside it."""
    return array_path.with_name(array_path.stem + ".labels.npy")


def output_file(path, flag: str, suffixes: tuple[str, ...]) -> Path:
    """A file path option, `~` expanded, that is not a folder and ends in one of `suffixes`."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise DifflabError(f"{flag} {path} is a folder: give a file name, e.g. {flag} {path / ('samples' + suffixes[0])}")
    if path.suffix.lower() not in suffixes:
        raise DifflabError(f"{flag} {path} must end in {' or '.join(suffixes)}, e.g. {flag} "
                           f"{path.with_suffix(suffixes[0]).name}")
    return path


def outputs(out, save_array_path, grid: bool, data_shape) -> tuple[Path | None, Path | None]:
    """(grid path or None, array path or None), checked before any sampling is done."""
    if not grid and out is not None:
        raise DifflabError("--no-grid writes no picture: drop --out, or drop --no-grid")
    if out is None and grid and save_array_path is None:
        out = "samples.png"
    array = None if save_array_path is None else output_file(save_array_path, "--save-array", (".npy",))
    if out is None:
        if array is None:
            raise DifflabError("--no-grid leaves nothing to write: add --save-array x.npy")
        return None, array
    return output_file(out, "--out", GRID_SUFFIXES if len(data_shape) == 3 else PLOT_SUFFIXES), array


def run_sample(run: str | Path, *, out: str | Path | None = None, n: int | None = None,
               sampler: str | None = None, steps: int | None = None, schedule: str | None = None,
               seed: int | None = None, ema: bool = True, labels=None, prompt: str | None = None,
               negative: str | None = None, guidance: float | None = None, save_array_path=None,
               device: str | None = None, classifier_scale: float | None = None, grid: bool = True,
               options: dict | None = None, schedule_options: dict | None = None, checkpoint: int | None = None):
    """Sample RUN's model into a grid at `out` (and/or an array at save_array_path; see the module doc).

    None means the run's own setting (its config's `sample` section); options / schedule_options update
    the config's sample.options / sample.schedule_options; checkpoint: ckpt-<step> instead of the newest.
    classifier_scale s != 0 guides toward `labels`
    with the run's classifier (RUN/classifier, from `difflab train-classifier`), on top of any weight w.
    """
    console = Console()
    device = resolve_device(device)
    n = None if n is None else check_count(n)
    run = Path(run).expanduser()
    loaded = load_run(run, ema=ema, device=device, checkpoint=checkpoint, steps=steps)
    if isinstance(loaded.model, Baseline):  # a VAE, GAN or PixelCNN draws with its own sampler
        check_sampling_options(loaded.config.family, {"--sampler": sampler, "--steps": steps, "--schedule": schedule,
                                                      "--option": options, "--schedule-option": schedule_options})
    out, array_path = outputs(out, save_array_path, grid, loaded.meta.data_shape)
    classifier = load_run_classifier(run, device=device, ema=ema) if classifier_scale else None
    s = loaded.config.sample
    n = s.n if n is None else n
    sampler = s.sampler if sampler is None else sampler
    steps = s.steps if steps is None else steps
    times = resolve_schedule(run, s.schedule if schedule is None else schedule, sampler, steps)  # 'fitted': the saved one
    if sampler == "bespoke" and not isinstance(times, FittedGrid):
        console.print(f"note: the bespoke solver without its fitted weights is DEIS (its starting point); fit it with "
                      f"`difflab fit-schedule {run} --sampler bespoke --steps {steps}` and add --schedule fitted",
                      markup=False, highlight=False, soft_wrap=True)
    keywords, grid_keywords = run_sample_keywords(s, sampler, schedule, options, schedule_options)
    result = generate(loaded.model, loaded.meta, n, sampler=sampler, steps=steps, schedule=times,
                      seed=s.seed if seed is None else seed, guidance=s.guidance if guidance is None else guidance,
                      labels=labels, prompts=[prompt] if prompt is not None else None, negative=negative,
                      text_encoder=loaded.text_encoder, device=device, classifier=classifier,
                      classifier_scale=0.0 if classifier_scale is None else classifier_scale,
                      options=keywords, schedule_options=grid_keywords, progress=True)
    result = result._replace(x=loaded.to_images(result.x))  # a latent run's samples decoded to pictures
    written = []
    if out is not None:
        if len(loaded.meta.data_shape) == 3:
            save_image_grid(result.x, out, scale=max(1, 128 // result.x.shape[-1]))
        else:
            plot_points(result.x, out, title=f"{n} samples")
        written.append(str(out))
    if array_path is not None:
        written.append(str(save_array(result.x, array_path)))
        if result.labels is not None:
            written.append(str(save_array(result.labels, labels_path(array_path))))
    setup = f"; its grid was fitted once with {times.fit_nfe} calls" if isinstance(times, FittedGrid) else ""
    calls = "denoiser" if loaded.config.family == "diffusion" else "network"  # a baseline has no denoiser
    console.print(f"wrote {', '.join(written)} ({n} samples, {result.nfe} {calls} evaluation{'' if result.nfe == 1 else 's'}{setup}) "
                  f"from {loaded.checkpoint}", markup=False, highlight=False, soft_wrap=True)
    return result
