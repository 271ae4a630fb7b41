"""`difflab sample`: load a run, draw samples, write a grid (and optionally the raw array)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console

from difflab.jobs.classifier import load_run_classifier
from difflab.jobs.generate import generate
from difflab.jobs.runs import load_run, torch_device
from difflab.utils.files import atomic_write
from difflab.viz import plot_points, save_image_grid


def save_array(x, path: Path) -> Path:
    """Write samples as .npy atomically (float32, in the data range [-1, 1])."""
    return atomic_write(path, lambda tmp: np.save(tmp, x.detach().cpu().float().numpy()))


def run_sample(run: str | Path, *, out: str | Path = "samples.png", n: int | None = None,
               sampler: str | None = None, steps: int | None = None, schedule: str | None = None,
               seed: int | None = None, ema: bool = True, labels=None, prompt: str | None = None,
               negative: str | None = None, guidance: float | None = None, save_array_path=None,
               device: str | None = None, classifier_scale: float | None = None):
    """Sample RUN's model into a grid at `out`. classifier_scale s != 0 guides toward `labels` with the
    run's classifier (RUN/classifier, from `difflab train-classifier`), on top of any guidance weight w."""
    console = Console()
    device = torch_device(device)
    loaded = load_run(run, ema=ema, device=device)
    classifier = load_run_classifier(run, device=device, ema=ema) if classifier_scale else None
    s = loaded.config.sample
    n = n or s.n
    result = generate(loaded.model, loaded.meta, n, sampler=sampler or s.sampler, steps=steps or s.steps,
                      schedule=schedule or s.schedule, seed=s.seed if seed is None else seed,
                      guidance=s.guidance if guidance is None else guidance, labels=labels,
                      prompts=[prompt] if prompt is not None else None, negative=negative,
                      text_encoder=loaded.text_encoder, device=device, classifier=classifier,
                      classifier_scale=classifier_scale or 0.0)
    x = result.x.clamp(-1, 1)
    out = Path(out)
    if len(loaded.meta.data_shape) == 3:
        save_image_grid(x, out, scale=max(1, 128 // loaded.meta.data_shape[-1]))
    else:
        plot_points(x, out, title=f"{n} samples")
    if save_array_path is not None:
        save_array(x, Path(save_array_path))
    console.print(f"wrote {out} ({n} samples, {result.nfe} denoiser evaluations) from {loaded.checkpoint}")
    return result
