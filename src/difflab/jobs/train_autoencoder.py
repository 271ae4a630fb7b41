"""`difflab train-autoencoder`: train a KL-VAE or VQ-VAE / VQ-GAN into an autoencoder run folder.

Same semantics as `difflab train` (difflab.jobs.train: its refusal, resume and budget rules are the ones
used here): a fresh run into a folder that holds one is refused before anything is written, any refusal
leaves the folder as it was, one process trains into a folder at a time, and on --resume --minutes /
--steps mean "this much more". The shared Trainer runs the autoencoder's objective
(difflab.autoencoders.objective: reconstruction + KL or VQ terms, a patch discriminator on its own
optimizer), with EMA, checkpoints, progress and previews: a grid of fixed training images above their
reconstructions by the EMA weights.

Every checkpoint carries the latent scale s = 1 / std of the EMA encoder's latents over `scale_items`
training images (difflab.autoencoders.measure_latent_scale; Rombach et al. 2022 §4.3.2), measured just
before it is written and stored twice: in the autoencoder's buffer (so the weights carry it) and in the
checkpoint's config.yaml (`latent_scale`). The measurement reads no random numbers and changes nothing
the loss sees, so a resumed run repeats the uninterrupted one exactly.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from rich.console import Console
from torch.utils.data import Dataset

from difflab.autoencoders import Autoencoder, measure_latent_scale
from difflab.config.autoencoder import (
    AutoencoderRunConfig,
    autoencoder_config_from_dict,
    autoencoder_config_to_dict,
    build_autoencoder,
    build_autoencoder_objective,
    latent_shape,
    load_autoencoder_config,
)
from difflab.config.factory import build_data
from difflab.config.loader import apply_overrides
from difflab.data.datasets import collate, value_range_of
from difflab.jobs.autoencoder_runs import (
    AutoencoderMeta,
    read_autoencoder_meta,
    write_autoencoder_meta,
)
from difflab.jobs.train import (
    _describe,
    budget,
    folder_state,
    refusal_leaves_nothing,
    refuse_existing,
    resume_point,
)
from difflab.nets.registry import count_parameters
from difflab.train import Trainer, list_checkpoints, read_config
from difflab.train.checkpoint import read_state
from difflab.train.lock import RunLock
from difflab.train.prepare import Unconditional
from difflab.train.settings import TrainResult
from difflab.utils.errors import DifflabError
from difflab.utils.seeding import seed_everything
from difflab.viz import save_image_grid

SCALE_BATCH = 256
PREVIEW_DIR = "reconstructions"


def fixed_images(dataset: Dataset, count: int, seed: int) -> torch.Tensor:
    """`count` images of `dataset` (a seeded random choice, in index order; all of a smaller set), stacked."""
    n = len(dataset)
    pick = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:count].sort().values.tolist()
    return collate([dataset[i] for i in pick])["x"]


def reconstruct(model: Autoencoder, x: torch.Tensor, batch_size: int = SCALE_BATCH) -> torch.Tensor:
    """decode(encode(x)) in batches on the model's device (no_grad), returned on x's device."""
    device = next(model.parameters()).device
    with torch.no_grad():
        out = [model.decode(model.encode(x[i:i + batch_size].to(device))).to(x.device)
               for i in range(0, len(x), batch_size)]
    return torch.cat(out)


def comparison_grid(inputs: torch.Tensor, outputs: torch.Tensor, path: Path, per_row: int = 8,
                    caption: str | None = None) -> Path:
    """A PNG of rows of `per_row` inputs, each above the row of their reconstructions (clamped to [-1, 1])."""
    rows = []
    for i in range(0, len(inputs), per_row):
        a, b = inputs[i:i + per_row], outputs[i:i + per_row].clamp(-1, 1)
        pad = per_row - len(a)
        if pad and len(inputs) > per_row:  # a short last row pair is padded with black tiles
            blank = torch.full((pad, *a.shape[1:]), -1.0)
            a, b = torch.cat([a, blank]), torch.cat([b, blank])
        rows += [a, b]
    width = min(per_row, len(inputs))
    scale = max(1, 64 // inputs.shape[-1])  # 32x32 tiles shown at 64x64, 8x8 digits at 64x64
    return save_image_grid(torch.cat(rows).cpu(), path, nrow=width, scale=scale, caption=caption)


def preview_fn(images: torch.Tensor):
    """The trainer's sample_fn: `images` above their reconstructions by the EMA model, in RUN/reconstructions/."""

    def draw(model, step: int, out_dir: Path):
        outputs = reconstruct(model, images)
        for path in (out_dir / PREVIEW_DIR / f"step-{step:07d}.png", out_dir / f"{PREVIEW_DIR}.png"):
            comparison_grid(images, outputs, path)

    return draw


class AutoencoderTrainer(Trainer):
    """The shared Trainer, measuring the latent scale on the EMA weights before every checkpoint it writes
    and storing it in both modules' buffer and in the run config that the checkpoint saves."""

    def __init__(self, *args, scale_images: torch.Tensor, **kwargs):
        super().__init__(*args, **kwargs)
        self.scale_images = scale_images
        self.latent_scale: float | None = None

    def _measure(self) -> float:
        ema = self.ema.module
        device = next(ema.parameters()).device
        batches = (self.scale_images[i:i + SCALE_BATCH].to(device) for i in range(0, len(self.scale_images), SCALE_BATCH))
        return measure_latent_scale(ema, batches)

    def save(self) -> Path | None:
        if self.accelerator.is_main_process and self.step > 0:
            scale = self._measure()
            for module in (self.ema.module, self.model):  # the EMA copies the model's buffers at every update
                module.set_latent_scale(scale)
            self.run_config["latent_scale"] = self.latent_scale = scale
        return super().save()


def _resolve(config: str | Path | None, out: Path, overrides: list[str], ckpt: Path | None) -> AutoencoderRunConfig:
    """The preset/file config, or on resume the run's own saved config (overrides apply to both)."""
    if ckpt is not None:
        return autoencoder_config_from_dict(apply_overrides(read_config(ckpt), overrides))
    if config is None:
        raise DifflabError(f"{out} has no checkpoint to resume from; name an autoencoder preset (e.g. shapes-kl) "
                           "or config file")
    return load_autoencoder_config(config, overrides)


def _refuse_other_kinds(out: Path) -> None:
    """A folder holding a diffusion run (its run.json has no autoencoder kind) is never trained into."""
    if (out / "run.json").is_file():
        read_autoencoder_meta(out)  # a diffusion run or a damaged file: one message


def _check_meta(out: Path, meta: AutoencoderMeta, resume: bool) -> None:
    if resume and (out / "run.json").is_file():
        saved = read_autoencoder_meta(out)
        if (saved.data_shape, saved.latent_shape, saved.autoencoder) != (meta.data_shape, meta.latent_shape,
                                                                        meta.autoencoder):
            raise DifflabError(f"{out} was trained on images of shape {saved.data_shape} into latents "
                               f"{saved.latent_shape}; this config gives {meta.data_shape} -> {meta.latent_shape}: "
                               "use another --out")


def run_train_autoencoder(config: str | Path | None, out: str | Path, *, minutes: float | None = None,
                          steps: int | None = None, overrides: list[str] | None = None,
                          resume: bool = False) -> TrainResult:
    """Train `config` (an autoencoder preset or YAML file) into `out`, or with resume=True continue the run there."""
    console = Console()
    out = Path(out).expanduser()
    refuse_existing(out, resume)
    if out.is_dir():
        _refuse_other_kinds(out)
    if config is None and not list_checkpoints(out):
        raise DifflabError(f"{out} has no checkpoint to resume from; name an autoencoder preset (e.g. shapes-kl) "
                           "or config file")
    state = folder_state(out)
    with RunLock(out) as lock, refusal_leaves_nothing(out, state):
        if lock.note:
            console.print(lock.note, markup=False, highlight=False, soft_wrap=True)
        ckpt = resume_point(out) if resume else None
        cfg = _resolve(config, out, list(overrides or []), ckpt)
        cfg = replace(cfg, train=budget(cfg.train, read_state(ckpt) if ckpt else None, minutes, steps))
        seed_everything(cfg.train.seed)

        dataset = build_data(cfg.data)
        shape = tuple(dataset.data_shape)
        model = build_autoencoder(cfg, shape)  # image data, sizes divisible by f: checked here
        meta = AutoencoderMeta(cfg.autoencoder.kind, shape, latent_shape(model, shape), model.factor,
                               value_range_of(dataset) or (-1.0, 1.0))
        _check_meta(out, meta, resume)
        objective = build_autoencoder_objective(cfg)
        plain = build_data(replace(cfg.data, options={k: v for k, v in cfg.data.options.items() if k != "hflip"}))
        scale_images = fixed_images(plain, cfg.scale_items, cfg.train.seed)
        previews = fixed_images(plain, cfg.preview, cfg.train.seed + 1)
        console.print(f"difflab train-autoencoder {cfg.data.name} -> {out}: {type(model).__name__} "
                      f"({count_parameters(model) / 1e6:.2f}M parameters), f = {model.factor}, images {shape} -> "
                      f"latents {meta.latent_shape}, {len(dataset)} items; until {_describe(cfg.train)}",
                      markup=False, highlight=False, soft_wrap=True)
        write_autoencoder_meta(out, meta)
        trainer = AutoencoderTrainer(model, None, dataset, cfg.train, out, sample_fn=preview_fn(previews),
                                     prepare=Unconditional(), run_config=autoencoder_config_to_dict(cfg),
                                     objective=objective, scale_images=scale_images)
        result = trainer.train(resume=resume)
    if trainer.latent_scale is not None:
        console.print(f"latent scale 1/std = {trainer.latent_scale:.6g} (EMA encoder, {len(scale_images)} training "
                      f"images), stored in {result.checkpoint}", markup=False, highlight=False, soft_wrap=True)
    return result

