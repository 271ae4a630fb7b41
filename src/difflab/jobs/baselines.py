"""The baselines as runs: `difflab train / sample / eval` on a run whose family is vae, gan or pixelcnn.

A baseline run is a run like any other (the same folder, lock, checkpoints, resume, EMA and preview
grids: jobs.train hands it here after the data are built); only the model and its objective differ, both
from difflab.baselines through the factory (config.factory.build_baseline_model, registry's
baseline_objective; the trainer's loss_fn is None). Its model draws samples itself
(Baseline.sample: a VAE decodes prior draws, a GAN maps latents, a PixelCNN samples pixel by pixel),
so `generate` hands a baseline here: the sampler, grid and guidance of diffusion do not apply.

Seeding: a baseline's n samples come from ONE generator seeded with the first sample's seed (its sample()
takes one generator for the batch, which keeps a PixelCNN's H*W*C passes batched), so unlike a diffusion
run's per-sample seeds a baseline's samples depend on the batch size. Data with L levels (digits: 17)
are checked to lie on them before training (the baselines' training step does not check).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from rich.console import Console

from difflab.baselines.base import Baseline
from difflab.baselines.registry import baseline_objective
from difflab.config.factory import build_baseline_model, build_prepare, data_levels
from difflab.config.loader import config_to_dict
from difflab.config.schema import RunConfig
from difflab.jobs.generate import Generated, clamp_to_data, class_labels
from difflab.jobs.runs import write_meta
from difflab.likelihood import check_levels
from difflab.nets.registry import count_parameters
from difflab.train import Trainer
from difflab.train.settings import TrainResult
from difflab.utils.errors import DifflabError

CHECK_CHUNK = 4096  # items per levels check


def check_data_levels(dataset, levels: int) -> None:
    """One DifflabError (difflab.likelihood.check_levels) unless every item's x lies on the L levels."""
    for start in range(0, len(dataset), CHECK_CHUNK):
        check_levels(torch.stack([dataset[i]["x"] for i in range(start, min(start + CHECK_CHUNK, len(dataset)))]),
                     levels)


def train_baseline(cfg: RunConfig, out: Path, dataset, resume: bool, console: Console) -> TrainResult:
    """Train the baseline of `cfg` on `dataset` into `out` (called by jobs.train.run_train under its lock)."""
    from difflab.jobs.train import _describe, preview_fn, run_meta  # jobs.train hands baselines here

    levels = data_levels(cfg.data)
    if levels is not None:
        check_data_levels(dataset, levels)
    meta = run_meta(out, dataset, cfg, None, resume)
    model = build_baseline_model(cfg, meta.data_shape, meta.num_classes)
    console.print(f"difflab train {cfg.data.name} -> {out}: {cfg.family} baseline ({count_parameters(model) / 1e6:.2f}M "
                  f"parameters), {len(dataset)} items of shape {meta.data_shape}, "
                  f"{'continuous' if levels is None else f'{levels} levels'}; until {_describe(cfg.train)}",
                  markup=False, highlight=False, soft_wrap=True)
    write_meta(out, meta)
    trainer = Trainer(model, None, dataset, cfg.train, out, sample_fn=preview_fn(meta, cfg, None, None),
                      prepare=build_prepare(cfg), run_config=config_to_dict(cfg),
                      objective=baseline_objective(cfg.family))
    return trainer.train(resume=resume)


@torch.no_grad()
def generate_baseline(model: Baseline, meta, n: int, *, seed: int | Sequence[int], labels=None,
                      guidance: float = 1.0, prompts=None, classifier=None, classifier_scale: float = 0.0,
                      device="cpu") -> Generated:
    """n samples of a baseline, clamped to the data range, their class labels (a class-conditional model
    cycles through its classes unless `labels` are given) and its network evaluations per sample."""
    if prompts is not None:
        raise DifflabError(f"a {model.family} baseline takes no text prompt: drop --prompt")
    if guidance != 1.0 or (classifier is not None and classifier_scale != 0.0):
        raise DifflabError(f"a {model.family} baseline draws with its own sampler: guidance (--guidance, "
                           "--classifier-scale) applies to diffusion runs; drop it")
    if labels is not None and model.num_classes is None:
        raise DifflabError("this model is not class-conditional: drop --class")
    y = None
    if model.num_classes is not None:
        y = class_labels(labels, model.num_classes, n, "this model's", device) if labels is not None else \
            (torch.arange(n) % model.num_classes).to(device)
    if isinstance(seed, int):  # one stream for the batch, as difflab.sample does with an int seed
        x = model.sample(n, generator=torch.Generator(device).manual_seed(seed), device=device, labels=y)
    else:  # one seed per sample (eval): sample i is the same whatever --batch-size
        x = model.sample(n, seeds=list(seed), device=device, labels=y)
    return Generated(clamp_to_data(x, meta), y, model.nfe_per_sample, None)


def check_sampling_options(family: str, given: dict) -> None:
    """Diffusion's sampling options (--sampler, --steps, ...) given to a baseline run: one message naming them."""
    named = [flag for flag, value in given.items() if value]
    if named:
        raise DifflabError(f"{', '.join(named)} set(s) a diffusion sampler; a {family} run draws with its own: "
                           "drop them")
