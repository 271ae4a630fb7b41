"""`difflab train`: build everything a config names, train it, and leave a run folder behind.

Nothing already trained is lost by ordinary use: a fresh run into a folder that holds one is refused
before anything is written, and any refusal leaves the folder as it was (or absent); one process at a
time trains into a folder (difflab.train.lock); on --resume, --minutes / --steps mean "this much more",
and with neither the run continues for what is left of the budget it was started with.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from difflab.config.factory import (
    build_denoiser,
    build_objective,
    build_prepare,
    build_process,
    build_text_encoder,
    objective_defaults,
)
from difflab.config.loader import apply_overrides, config_from_dict, config_to_dict, load_config
from difflab.config.schema import RunConfig
from difflab.data.datasets import value_range_of
from difflab.jobs.generate import generate, resolve_device
from difflab.jobs.latent import decode_latents, latent_record, training_data
from difflab.jobs.runs import RunMeta, read_meta, write_meta
from difflab.nets.registry import count_parameters
from difflab.train import Trainer, list_checkpoints, read_config
from difflab.train.checkpoint import CKPT_RE, newest_intact_checkpoint, read_state
from difflab.train.lock import LOCK_NAME, RunLock
from difflab.train.settings import TrainConfig, TrainResult
from difflab.utils.errors import DifflabError
from difflab.utils.progress import format_duration
from difflab.utils.seeding import seed_everything
from difflab.viz import plot_points, save_image_grid


def refuse_existing(out: Path, resume: bool, fix: str = "add --resume to continue it, or choose another --out") -> None:
    """Without --resume, a folder that holds a run is refused before anything in it changes (`fix`: what
    the message tells the user to do instead)."""
    if out.exists() and not out.is_dir():
        raise DifflabError(f"--out {out} is a file, not a run folder: choose another --out")
    if resume or not out.is_dir():
        return
    held = sorted(p.name for p in out.iterdir() if p.name in ("run.json", "log.jsonl") or CKPT_RE.fullmatch(p.name))
    if held:
        raise DifflabError(f"{out} already holds a run ({', '.join(held[:4])}): {fix}")


def folder_state(out: Path) -> tuple[set[str] | None, list[Path]]:
    """What `out` holds (None when absent) and the folders a lock would create for it, deepest first."""
    missing = [p for p in (out, *out.parents) if not p.exists()]
    return ({p.name for p in out.iterdir()} if out.is_dir() else None), missing


@contextlib.contextmanager
def refusal_leaves_nothing(out: Path, state: tuple[set[str] | None, list[Path]]):
    """A job that stops before training starts (bad --set, empty data, a spent budget...) leaves `out` as it
    found it (`state`: folder_state(out) before the lock): a folder it created, holding only the lock, or
    the lock and run.json, is removed with the parents created for it, and a lock file it added to an
    existing folder is deleted. Entered while the lock is held, so nothing another process made is
    touched; a folder holding anything else (a log, a checkpoint) is kept."""
    before, missing = state
    try:
        yield
    except BaseException:
        left = {p.name for p in out.iterdir()} if out.is_dir() else set()
        if before is None and left <= {LOCK_NAME, "run.json"}:
            shutil.rmtree(out, ignore_errors=True)
            for parent in missing[1:]:
                with contextlib.suppress(OSError):  # not empty (or not ours): kept
                    parent.rmdir()
        elif before is not None and LOCK_NAME not in before:
            (out / LOCK_NAME).unlink(missing_ok=True)
        raise


def resume_point(out: Path) -> Path | None:
    """The checkpoint a resume continues from (the newest intact one), None for a folder without any."""
    ckpt, skipped = newest_intact_checkpoint(out)
    if ckpt is None and skipped:
        raise DifflabError(f"every checkpoint of {out} is damaged ({'; '.join(map(str, skipped))}): nothing can be "
                           "resumed; train a new run with another --out")
    return ckpt


def resolve_config(config: str | Path | None, out: Path, overrides: list[str], ckpt: Path | None) -> RunConfig:
    """The preset/file config, or on resume the run's own saved config (overrides apply to both)."""
    if ckpt is not None:
        return config_from_dict(apply_overrides(read_config(ckpt), overrides))
    if config is None:
        raise DifflabError(f"{out} has no checkpoint to resume from; name a preset or config file")
    return load_config(config, overrides)


def _describe(cfg: TrainConfig) -> str:
    parts = [f"{cfg.max_steps} steps"] if cfg.max_steps is not None else []
    parts += [f"{format_duration(60 * cfg.max_minutes)} in all"] if cfg.max_minutes is not None else []
    return " or ".join(parts) or "no limit"


def budget(cfg: TrainConfig, state: dict | None, minutes: float | None, steps: int | None) -> TrainConfig:
    """The run's step and time limits (totals over the run, TrainConfig's meaning).

    A new run: --minutes / --steps replace the config's max_minutes / max_steps. A resume (state of its
    checkpoint): --minutes M and --steps N mean M minutes / N steps more than the checkpoint's, and the
    one not given sets no limit; with neither, the saved limits stand, so the run trains what is left of
    its budget, and a run that has used all of it is refused with the flags to give.
    """
    if minutes is not None and not 0 < minutes < float("inf"):
        raise DifflabError(f"--minutes must be a positive number of minutes; got {minutes}")
    if steps is not None and steps < 1:
        raise DifflabError(f"--steps must be at least 1; got {steps}")
    if state is None:
        return replace(cfg, **{k: v for k, v in (("max_minutes", minutes), ("max_steps", steps)) if v is not None})
    step, elapsed = int(state["step"]), float(state["elapsed"])
    if minutes is None and steps is None:
        steps_spent = cfg.max_steps is not None and step >= cfg.max_steps
        time_spent = cfg.max_minutes is not None and elapsed >= 60 * cfg.max_minutes
        if steps_spent or time_spent:
            raise DifflabError(f"the run has used its whole budget ({_describe(cfg)}; it stopped at step {step} after "
                               f"{elapsed / 60:.1f} minutes): add --steps N or --minutes M to train that much more")
        return cfg
    return replace(cfg, max_steps=None if steps is None else step + steps,
                   max_minutes=None if minutes is None else elapsed / 60 + minutes)


def preview_fn(meta: RunMeta, cfg: RunConfig, text_encoder, captions: list[str] | None, autoencoder=None):
    """The trainer's sample_fn: a grid of cfg.sample.n samples under RUN/samples/, drawn with the sample
    section's sampler, grid and their options, as `difflab sample` draws them (a latent run's decoded)."""

    def draw(model, step: int, out_dir: Path):
        n = min(cfg.sample.n, 64)
        device = next(model.parameters()).device
        prompts = (captions * n)[:n] if captions else None
        result = generate(model, meta, n, sampler=cfg.sample.sampler, steps=cfg.sample.steps,
                          schedule=cfg.sample.schedule, seed=cfg.sample.seed, guidance=cfg.sample.guidance,
                          prompts=prompts, text_encoder=text_encoder, device=device, options=cfg.sample.options,
                          schedule_options=cfg.sample.schedule_options)
        x = result.x if autoencoder is None else decode_latents(autoencoder, result.x)
        if len(meta.data_shape) == 3:
            scale = max(1, 128 // x.shape[-1])
            for path in (out_dir / "samples" / f"step-{step:07d}.png", out_dir / "samples.png"):
                save_image_grid(x, path, scale=scale)
        else:
            plot_points(result.x, out_dir / "samples.png", title=f"samples at step {step}")

    return draw


def run_meta(out: Path, dataset, cfg: RunConfig, text_encoder, resume: bool) -> RunMeta:
    """What the network is built from; on resume it must match the run's run.json (rewritten if damaged)."""
    meta = RunMeta(tuple(dataset.data_shape), dataset.num_classes if cfg.model.conditioning == "class" else None,
                   text_encoder.dim if text_encoder is not None else None, value_range=value_range_of(dataset))
    if resume and (out / "run.json").is_file():
        try:
            saved = read_meta(out)
        except DifflabError as e:
            Console().print(f"{e}; writing it again from the data", markup=False, highlight=False, soft_wrap=True)
        else:
            if saved != meta:
                raise DifflabError(f"{out} was trained on data of another shape or conditioning; use another --out")
    return meta


def run_train(config: str | Path | None, out: str | Path, *, minutes: float | None = None,
              steps: int | None = None, overrides: list[str] | None = None, resume: bool = False) -> TrainResult:
    """Train `config` (a preset or YAML file) into `out`, or with resume=True continue the run there."""
    console = Console()
    out = Path(out).expanduser()
    refuse_existing(out, resume)
    if config is None and not list_checkpoints(out):
        raise DifflabError(f"{out} has no checkpoint to resume from; name a preset or config file")
    state = folder_state(out)  # before the lock creates anything
    with RunLock(out) as lock, refusal_leaves_nothing(out, state):
        if lock.note:
            console.print(lock.note, markup=False, highlight=False, soft_wrap=True)
        ckpt = resume_point(out) if resume else None
        cfg = resolve_config(config, out, list(overrides or []), ckpt)
        train_cfg = budget(cfg.train, read_state(ckpt) if ckpt else None, minutes, steps)
        cfg = objective_defaults(replace(cfg, train=train_cfg))  # what the objective implies
        seed_everything(cfg.train.seed)

        dataset, autoencoder = training_data(cfg, out, resolve_device())  # latents with model.autoencoder
        if cfg.family != "diffusion":  # a VAE, GAN or PixelCNN through the same trainer
            from difflab.jobs.baselines import train_baseline  # it builds on this module

            return train_baseline(cfg, out, dataset, resume, console)
        process = build_process(cfg.process)
        text_encoder = build_text_encoder(cfg.model)
        meta = run_meta(out, dataset, cfg, text_encoder, resume)
        meta.latent = None if autoencoder is None else latent_record(autoencoder, cfg.model.autoencoder, dataset)
        model = build_denoiser(cfg, process, meta.data_shape, meta.num_classes, meta.context_dim)
        console.print(f"difflab train {cfg.data.name} -> {out}: {cfg.model.network} "
                      f"({count_parameters(model) / 1e6:.2f}M parameters), {type(process).__name__}, "
                      f"{cfg.model.parameterization}-prediction, {len(dataset)} items of shape {meta.data_shape}; "
                      f"until {_describe(cfg.train)}", markup=False, highlight=False, soft_wrap=True)
        write_meta(out, meta)
        captions = None
        if text_encoder is not None:
            captions = [dataset[i]["caption"] for i in range(min(len(dataset), 64))]
        loss_fn, objective = build_objective(cfg)  # the denoising loss, or consistency training
        trainer = Trainer(model, loss_fn, dataset, cfg.train, out,
                          sample_fn=preview_fn(meta, cfg, text_encoder, captions, autoencoder),
                          prepare=build_prepare(cfg, text_encoder), run_config=config_to_dict(cfg),
                          objective=objective)
        result = trainer.train(resume=resume)  # it reports where it stopped and its checkpoint
    return result
