"""A run folder: its config, its metadata and its model, written by `train` and read by `sample`/`eval`.

    RUN/run.json              what the network was built from (data shape, classes, context width) and
                              the data range samples are clamped to
    RUN/ckpt-<step>/...       checkpoints (difflab.train.checkpoint), each with the full config.yaml
    RUN/samples/step-*.png    preview grids; RUN/samples.png the newest
    RUN/log.jsonl, loss.png   the training log and its curve
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from torch import nn

from difflab.config.distill import student_checkpoint
from difflab.config.factory import build_baseline_model, build_denoiser, build_process, build_text_encoder
from difflab.config.loader import config_from_dict
from difflab.config.schema import RunConfig
from difflab.jobs.generate import resolve_device
from difflab.jobs.latent import decode_latents, encode_images, run_autoencoder
from difflab.train.checkpoint import (
    DamagedCheckpoint,
    check_checkpoint,
    checkpoint_step,
    list_checkpoints,
    load_weights,
    newest_intact_checkpoint,
    read_config,
)
from difflab.utils.errors import DifflabError
from difflab.utils.files import atomic_write_json


@dataclass
class RunMeta:
    """What a run's network is built from, and value_range: the interval (lo, hi) its data lies in, which
    samples are clamped to (None: unbounded; "auto": not recorded, the data package's default for the
    shape, see jobs.generate.data_range). value_range is not compared: a run written before it was
    recorded resumes. latent: a latent run's image shape and autoencoder (jobs.latent.latent_record;
    None in pixel space), not compared either (the latent cache checks the autoencoder)."""

    data_shape: tuple[int, ...]
    num_classes: int | None
    context_dim: int | None
    class_names: list[str] | None = None
    value_range: tuple[float, float] | None | str = field(default="auto", compare=False)
    latent: dict | None = field(default=None, compare=False)


def write_meta(run_dir: Path, meta: RunMeta) -> None:
    """RUN/run.json; value_range as [lo, hi] or null (left out while "auto", so readers fall back)."""
    d = {**meta.__dict__, "data_shape": list(meta.data_shape)}
    if isinstance(meta.value_range, str):
        del d["value_range"]
    if meta.latent is None:
        del d["latent"]
    elif meta.value_range is not None:
        d["value_range"] = [float(v) for v in meta.value_range]
    atomic_write_json(run_dir / "run.json", d)


def _value_range(v) -> tuple[float, float] | None | str:
    """run.json's value_range: null, "auto" (absent in runs written before it was recorded) or [lo, hi]."""
    if v is None or v == "auto":
        return v
    lo, hi = (float(b) for b in v)
    if not lo < hi:
        raise ValueError(f"value_range {v} is not an interval lo < hi")
    return lo, hi


def read_meta(run_dir: Path) -> RunMeta:
    """RUN/run.json; one DifflabError naming the file when it is missing or damaged."""
    path = run_dir / "run.json"
    if not path.is_file():
        raise DifflabError(f"{run_dir} is not a difflab run (no run.json); train one with `difflab train`")
    def damaged(e: Exception) -> DifflabError:
        return DifflabError(f"{path} is damaged ({type(e).__name__}: {e}); `difflab train --out {run_dir} --resume "
                            "--steps 1` writes it again from the data")

    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise damaged(e) from None
    if isinstance(d, dict) and d.get("kind") == "autoencoder":  # outside the try: DifflabError is a ValueError
        raise DifflabError(f"{run_dir} is an autoencoder run, not a diffusion run: look at its reconstructions "
                           f"with `difflab reconstruct {run_dir} --images DIR --out grid.png` or `difflab eval "
                           f"{run_dir}`, or train a latent run on it with --set model.autoencoder={run_dir}")
    try:
        return RunMeta(tuple(int(n) for n in d["data_shape"]), d["num_classes"], d["context_dim"],
                       d.get("class_names"), _value_range(d.get("value_range", "auto")), d.get("latent"))
    except (ValueError, KeyError, TypeError) as e:
        raise damaged(e) from None


@dataclass
class LoadedRun:
    config: RunConfig
    meta: RunMeta
    model: nn.Module
    checkpoint: Path
    text_encoder: object | None
    autoencoder: object | None = None  # a latent run's (jobs.latent): samples are decoded by it

    @property
    def image_shape(self) -> tuple[int, ...]:
        """The shape of the run's pictures: its data shape, or a latent run's image shape."""
        return self.meta.data_shape if self.autoencoder is None else tuple(self.meta.latent["image_shape"])

    def to_images(self, x):
        """Samples as pictures: x itself, or a latent run's latents decoded (jobs.latent.decode_latents)."""
        return x if self.autoencoder is None else decode_latents(self.autoencoder, x)

    def to_latents(self, x):
        """Pictures as what the model denoises: x itself, or a latent run's latents (jobs.latent.encode_images)."""
        return x if self.autoencoder is None else encode_images(self.autoencoder, x)


def sampling_checkpoint(run_dir: Path, ema: bool = True, step: int | None = None) -> Path:
    """The newest checkpoint whose weights, state and config are sound (trainer.pt is not needed to
    sample); a damaged newer one is skipped with a note naming the file. `step`: ckpt-<step> itself
    (e.g. a progressive run's student of one phase), refused by name when it is missing or damaged."""
    weights = "ema.safetensors" if ema else "model.safetensors"
    if step is not None:
        steps = [checkpoint_step(p) for p in list_checkpoints(run_dir)]
        if step not in steps:
            raise DifflabError(f"{run_dir} has no checkpoint ckpt-{step}; its checkpoints are at steps "
                               f"{', '.join(map(str, steps)) or '(none)'}")
        path = run_dir / f"ckpt-{step}"
        try:
            check_checkpoint(path, (weights, "state.json", "config.yaml"))
        except DamagedCheckpoint as e:
            raise DifflabError(f"{e}; choose another --checkpoint") from None
        return path
    ckpt, skipped = newest_intact_checkpoint(run_dir, (weights, "state.json", "config.yaml"))
    if ckpt is None and skipped:
        raise DifflabError(f"{skipped[0]}; no checkpoint of {run_dir} is intact: resume training with "
                           f"`difflab train --out {run_dir} --resume` after removing the damaged folders, or retrain")
    if ckpt is None:
        raise DifflabError(f"{run_dir} has no complete checkpoint yet; train longer or resume it with --resume")
    for damage in skipped:
        Console(stderr=True).print(f"note: skipped {damage.file.parent.name}: {damage}; using {ckpt.name}",
                                   markup=False, highlight=False, soft_wrap=True)
    return ckpt


def _student_for(run_dir: Path, ckpt: Path, cfg: RunConfig, ema: bool, steps: int) -> tuple[Path, RunConfig]:
    """The checkpoint (and its config) of the `steps`-step student when the run holds one per step count."""
    want = student_checkpoint(cfg.distill, steps)
    if want is None or want == checkpoint_step(ckpt):
        return ckpt, cfg
    note = Console(stderr=True)
    if want not in [checkpoint_step(p) for p in list_checkpoints(run_dir)]:
        note.print(f"note: the {steps}-step student of this run would be ckpt-{want}, which {run_dir} does not hold "
                   f"(not reached yet, or pruned); sampling {ckpt.name} with {steps} steps",
                   markup=False, highlight=False, soft_wrap=True)
        return ckpt, cfg
    chosen = sampling_checkpoint(run_dir, ema, want)
    note.print(f"note: using ckpt-{want}, the {steps}-step student of this run (--checkpoint picks another)",
               markup=False, highlight=False, soft_wrap=True)
    return chosen, config_from_dict(read_config(chosen))


def load_run(run_dir: str | Path, ema: bool = True, device: str = "cpu", checkpoint: int | None = None,
             steps: int | None = None) -> LoadedRun:
    """Rebuild the model of a run from its newest intact checkpoint, or ckpt-<checkpoint> (EMA weights by default).

    `steps`: the sampler steps the caller will use; a run that holds one student per step count (progressive
    distillation) then loads that student's checkpoint unless `checkpoint` is given, and says so.

    Only the weights used, state.json and config.yaml are read (checked against the manifest).
    """
    if is_diffusers_source(run_dir):
        if checkpoint is not None:
            raise DifflabError(f"--checkpoint picks a step of a difflab run folder; {run_dir} is a diffusers model")
        return load_diffusers_run(run_dir, device)
    run_dir = Path(run_dir).expanduser()
    if not run_dir.is_dir():
        raise DifflabError(f"run folder {run_dir} does not exist; train one with `difflab train PRESET --out {run_dir}`")
    meta = read_meta(run_dir)
    ckpt = sampling_checkpoint(run_dir, ema, checkpoint)
    cfg = config_from_dict(read_config(ckpt))
    if checkpoint is None and steps is not None:
        ckpt, cfg = _student_for(run_dir, ckpt, cfg, ema, steps)
    if cfg.family != "diffusion":  # a VAE, GAN or PixelCNN: its own model, no process
        model = build_baseline_model(cfg, meta.data_shape, meta.num_classes)
    else:
        model = build_denoiser(cfg, build_process(cfg.process), meta.data_shape, meta.num_classes, meta.context_dim)
    load_weights(ckpt, model, ema=ema)
    model.to(device).eval().requires_grad_(False)
    autoencoder = None if meta.latent is None else run_autoencoder(meta.latent, run_dir, device=device)
    return LoadedRun(cfg, meta, model, ckpt, build_text_encoder(cfg.model, device=device), autoencoder)

def is_diffusers_source(source: str | Path) -> bool:
    """A diffusers model folder (model_index.json, or config.json without run.json) or an 'owner/name' hub id."""
    path = Path(source).expanduser()
    if path.is_dir():
        return not (path / "run.json").exists() and any((path / f).exists() for f in ("model_index.json", "config.json"))
    owner = str(source).split("/")[0]  # 'runs/new' under an existing runs/ is a run folder still to train
    return (not path.exists() and str(source).count("/") == 1 and not str(source).startswith((".", "/", "~"))
            and not Path(owner).is_dir())


def load_diffusers_run(source: str | Path, device: str = "cpu") -> LoadedRun:
    """A diffusers model (difflab.interop, offline) as a run: images in [-1, 1], its class count, the default
    grid of its scheduler (trailing on a DDPM table; the config's shift, once, on a flow)."""
    from difflab.interop import load_diffusers

    model = load_diffusers(source, device=device)
    if not hasattr(model, "sample_shape"):
        raise DifflabError(f"{source}: the model config gives no sample_size / in_channels to sample at")
    mc = model.model.config
    classes = mc.get("num_class_embeds") or mc.get("num_embeds_ada_norm")
    if classes and mc.get("num_embeds_ada_norm"):  # DiT: the extra class index num_classes is its null label
        model.null_cond = {"class_labels": torch.tensor([int(classes)], device=device)}
    cfg = RunConfig()
    sched = model.schedule
    cfg.sample.schedule = "shift" if sched.flow else "trailing"
    cfg.sample.schedule_options = {"shift": sched.shift} if sched.flow else {}
    text = model.text_encoder  # the pipeline's own tokenizer and text encoder, when its folder has them
    meta = RunMeta(tuple(model.sample_shape), int(classes) if classes else None, text.width if text else None,
                   value_range=(-1.0, 1.0))
    return LoadedRun(cfg, meta, model, Path(str(source)), text)


# The one device check (a name torch does not know, or CUDA/MPS this machine lacks, is one DifflabError),
# under the name fit-schedule and the benchmarks import.
torch_device = resolve_device
