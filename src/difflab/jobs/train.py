"""`difflab train`: build everything a config names, train it, and leave a run folder behind."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rich.console import Console

from difflab.config.factory import build_data, build_denoiser, build_loss, build_process, build_text_encoder
from difflab.config.loader import apply_overrides, config_from_dict, config_to_dict, load_config
from difflab.config.schema import RunConfig
from difflab.jobs.generate import generate
from difflab.jobs.runs import RunMeta, read_meta, write_meta
from difflab.nets.registry import count_parameters
from difflab.train import Trainer, latest_checkpoint, read_config
from difflab.train.settings import TrainResult
from difflab.utils.errors import DifflabError
from difflab.utils.seeding import seed_everything
from difflab.viz import plot_points, save_image_grid


def resolve_config(config: str | Path | None, out: Path, overrides: list[str], resume: bool) -> RunConfig:
    """The preset/file config, or on --resume the run's own saved config (overrides apply to both)."""
    ckpt = latest_checkpoint(out) if resume else None
    if ckpt is not None:
        return config_from_dict(apply_overrides(read_config(ckpt), overrides))
    if config is None:
        raise DifflabError(f"{out} has no checkpoint to resume from; name a preset or config file")
    return load_config(config, overrides)


def preview_fn(meta: RunMeta, cfg: RunConfig, text_encoder, captions: list[str] | None):
    """The trainer's sample_fn: a grid of cfg.sample.n samples under RUN/samples/."""

    def draw(model, step: int, out_dir: Path):
        n = min(cfg.sample.n, 64)
        device = next(model.parameters()).device
        prompts = (captions * n)[:n] if captions else None
        result = generate(model, meta, n, sampler=cfg.sample.sampler, steps=cfg.sample.steps,
                          schedule=cfg.sample.schedule, seed=cfg.sample.seed, guidance=cfg.sample.guidance,
                          prompts=prompts, text_encoder=text_encoder, device=device)
        if len(meta.data_shape) == 3:
            scale = max(1, 128 // meta.data_shape[-1])
            for path in (out_dir / "samples" / f"step-{step:07d}.png", out_dir / "samples.png"):
                save_image_grid(result.x, path, scale=scale)
        else:
            plot_points(result.x, out_dir / "samples.png", title=f"samples at step {step}")

    return draw


def run_train(config: str | Path | None, out: str | Path, *, minutes: float | None = None,
              steps: int | None = None, overrides: list[str] | None = None, resume: bool = False) -> TrainResult:
    console = Console()
    out = Path(out)
    cfg = resolve_config(config, out, list(overrides or []), resume)
    train_cfg = replace(cfg.train, condition=cfg.model.conditioning)
    if minutes is not None:
        train_cfg = replace(train_cfg, max_minutes=minutes)
    if steps is not None:
        train_cfg = replace(train_cfg, max_steps=steps)
    cfg = replace(cfg, train=train_cfg)
    seed_everything(cfg.train.seed)

    dataset = build_data(cfg.data)
    process = build_process(cfg.process)
    text_encoder = build_text_encoder(cfg.model)
    meta = RunMeta(tuple(dataset.data_shape), dataset.num_classes if cfg.model.conditioning == "class" else None,
                   text_encoder.dim if text_encoder is not None else None)
    if resume and (out / "run.json").is_file() and read_meta(out) != meta:
        raise DifflabError(f"{out} was trained on data of another shape or conditioning; use another --out")
    model = build_denoiser(cfg, process, meta.data_shape, meta.num_classes, meta.context_dim)
    console.print(f"[bold]difflab train[/] {cfg.data.name} -> {out}: {cfg.model.network} "
                  f"({count_parameters(model) / 1e6:.2f}M parameters), {type(process).__name__}, "
                  f"{cfg.model.parameterization}-prediction, {len(dataset)} items of shape {meta.data_shape}")
    write_meta(out, meta)
    captions = None
    if text_encoder is not None:
        captions = [dataset[i]["caption"] for i in range(min(len(dataset), 64))]
    encode = (lambda texts: text_encoder.encode(texts)) if text_encoder is not None else None
    trainer = Trainer(model, build_loss(cfg.loss), dataset, cfg.train, out,
                      sample_fn=preview_fn(meta, cfg, text_encoder, captions), encode_captions=encode,
                      run_config=config_to_dict(cfg))
    result = trainer.train(resume=resume)
    console.print(f"stopped at step {result.step} ({result.stop_reason}); checkpoint {result.checkpoint}")
    return result
