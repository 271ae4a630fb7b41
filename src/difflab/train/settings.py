"""TrainConfig: every knob of the training loop in one dataclass (nanoGPT style), checked on creation."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

from difflab.train.ema import check_ema
from difflab.utils.errors import DifflabError, check_choice

MIXED_PRECISION = ("no", "bf16")
LR_DECAYS = ("none", "linear", "cosine")


@dataclass
class TrainConfig:
    """Settings of `Trainer`.

    The optimizer is AdamW (Loshchilov & Hutter 2019) with weight_decay on every parameter and a
    linear LR warm-up over warmup_steps (see warmup_factor), constant afterwards unless lr_decay is
    'linear' or 'cosine': then the rate decays from step lr_decay_from to 0 at max_steps (see
    decay_factor; warm-up, stable, decay, as in Hu et al. 2024 and Hägele et al. 2024, so a run can be
    resumed with a longer max_steps and a decay over its new last steps).
    batch_size is the number of images per optimizer step over all processes and accumulation
    micro-batches: each process draws batch_size / (num_processes * grad_accum) images per micro-batch,
    so a run means the same thing on one device or eight.
    ema >= 1 is an EMA half-life in images (EDM, ramped up over the first ema_rampup fraction of the
    images seen); ema in (0, 1) is a per-step decay (see difflab.train.ema).
    max_steps and max_minutes are totals over the whole run, resumes included (elapsed time is saved
    with every checkpoint); max_steps=None sets no step limit. Intervals (log_every, sample_every,
    ckpt_every) count optimizer steps; 0 turns sampling or periodic checkpoints off (a checkpoint is
    still written at the end).
    p_uncond: the fraction of every batch trained unconditionally (cond["drop"], classifier-free
    guidance training, Ho & Salimans 2022; seed 000), applied by the conditional prepare functions
    (difflab.train.prepare) that difflab.config.factory.build_prepare builds from model.conditioning.
    What a batch feeds the loss is the Trainer's injected `prepare`, not a setting here. RETIRED: keys
    of configs written by older versions that difflab.config.validate.from_dict reads and ignores
    (condition: what the model's conditioning now decides), so old run folders keep loading.
    """

    RETIRED: ClassVar[frozenset[str]] = frozenset({"condition"})

    lr: float = 2e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    lr_decay: str = "none"
    lr_decay_from: int = 0
    grad_clip: float | None = 1.0
    batch_size: int = 128
    grad_accum: int = 1
    ema: float = 10_000.0
    ema_rampup: float | None = 0.05
    max_steps: int | None = 10_000
    max_minutes: float | None = None
    log_every: int = 50
    sample_every: int = 0
    ckpt_every: int = 1000
    keep_last: int | None = 3
    seed: int = 0
    mixed_precision: str = "no"
    compile: bool = False
    p_uncond: float = 0.1
    num_workers: int = 0

    def __post_init__(self):
        self.betas = tuple(float(b) for b in self.betas)
        check_choice("mixed precision", self.mixed_precision, MIXED_PRECISION)
        check_ema(self.ema, self.ema_rampup)
        rules = [
            (self.lr > 0, "lr must be positive"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "betas must be two numbers in [0, 1)"),
            (self.warmup_steps >= 0, "warmup_steps must be >= 0"),
            (self.lr_decay in LR_DECAYS, f"lr_decay must be one of {', '.join(LR_DECAYS)}, not {self.lr_decay!r}"),
            (self.lr_decay_from >= 0, "lr_decay_from must be >= 0"),
            (self.grad_clip is None or self.grad_clip > 0, "grad_clip must be positive, or None for no clipping"),
            (self.batch_size >= 1 and self.grad_accum >= 1, "batch_size and grad_accum must be >= 1"),
            (self.max_steps is None or self.max_steps >= 1, "max_steps must be >= 1, or None for no limit"),
            (self.max_minutes is None or self.max_minutes > 0, "max_minutes must be positive, or None"),
            (self.log_every >= 1, "log_every must be >= 1"),
            (self.sample_every >= 0 and self.ckpt_every >= 0, "sample_every and ckpt_every must be >= 0 (0 = off)"),
            (self.keep_last is None or self.keep_last >= 1, "keep_last must be >= 1, or None to keep all"),
            (self.seed >= 0, "seed must be a non-negative integer"),
            (0 <= self.p_uncond < 1, "p_uncond must lie in [0, 1)"),
            (self.num_workers >= 0, "num_workers must be >= 0"),
        ]
        broken = [msg for ok, msg in rules if not ok]
        if broken:
            raise DifflabError("invalid TrainConfig: " + "; ".join(broken))

    def to_dict(self) -> dict:
        """Plain data (lists for tuples), fit for YAML and JSON."""
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d


@dataclass
class TrainResult:
    """How a `Trainer.train` call ended: stop_reason is "max_steps", "max_minutes" or "interrupted"."""

    step: int
    images_seen: int
    elapsed: float
    stop_reason: str
    checkpoint: Path | None
