"""The run configuration: one dataclass per section, validated from YAML and `--set key=value`.

A run is fully described by a RunConfig; it is saved beside every checkpoint, so `difflab sample RUN`
rebuilds exactly the model that was trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from difflab.config.distill import DistillConfig
from difflab.train.settings import TrainConfig


@dataclass
class DataConfig:
    """A data set by registry name (difflab.data.build_dataset) and its options."""

    name: str = "digits"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProcessConfig:
    """A noise process by registry name (ddpm, vp, ve, flow) and its options."""

    name: str = "ddpm"
    options: dict[str, Any] = field(default_factory=dict)


AUTOENCODER_REQUIRED = "REQUIRED"  # model.autoencoder in a latent preset: the user must name one (jobs.latent)


@dataclass
class ModelConfig:
    """The network, what it predicts and how it is wrapped into a denoiser.

    conditioning: none | class (labels from the data set) | text (captions through `text_encoder`).
    preconditioning: none (NetworkDenoiser, c_noise = time_scale t) | edm (EDMDenoiser, x0 output) | consistency
    (difflab.param.ConsistencyDenoiser around the NetworkDenoiser of `parameterization`: f(x, t_min) = x).
    objective: denoising (the loss section's DiffusionLoss) | consistency_training (iCT from scratch,
    difflab.distill.consistency; implies preconditioning=consistency) | meanflow (the average velocity from
    scratch, difflab.objectives.meanflow; implies the network's interval_embedding and the meanflow sampler),
    `objective_options` its keywords.
    autoencoder: None (pixel space) or an autoencoder run folder / diffusers AutoencoderKL folder or hub id:
    latent diffusion, the denoiser trains on the data's cached latents and samples are decoded (jobs.latent).
    time_scale: the network's time input c_noise = time_scale t (and interval time_scale (t - r)) for
    preconditioning none / consistency; 1000 puts t on DDPM's step scale. MeanFlow's target differentiates the
    network in t, and a smaller scale (1) keeps the sinusoidal time features' derivatives small.
    """

    network: str = "unet"
    options: dict[str, Any] = field(default_factory=dict)
    parameterization: str = "eps"
    preconditioning: str = "none"
    sigma_data: float = 0.5
    conditioning: str = "none"
    text_encoder: str | None = None
    autoencoder: str | None = None
    objective: str = "denoising"
    objective_options: dict[str, Any] = field(default_factory=dict)
    time_scale: float = 1000.0

    def __post_init__(self):
        if self.conditioning == "text" and self.network == "mlp":  # before any text encoder is loaded
            raise ValueError("text conditioning needs cross-attention: use model.network=unet or dit")
        if not self.sigma_data > 0:
            raise ValueError(f"model.sigma_data (the data's standard deviation) must be > 0; got {self.sigma_data}")
        if not self.time_scale > 0:
            raise ValueError(f"model.time_scale (c_noise = time_scale t) must be > 0; got {self.time_scale}")


@dataclass
class LossConfig:
    """Time density and weighting of the denoising loss (difflab.objectives)."""

    time_sampler: str = "uniform"
    mean: float = 0.0
    std: float = 1.0
    shift: float = 1.0
    weighting: str = "uniform"
    gamma: float = 5.0


@dataclass
class SampleConfig:
    """Defaults for preview grids and `difflab sample`.

    options: the sampler's own keywords (eta, order, s_churn, ...; `--option KEY=VALUE`); schedule_options:
    the time grid's (rho, shift, t_max, ...; `--schedule-option KEY=VALUE`), checked when sampling.
    """

    sampler: str = "default"
    steps: int = 50
    schedule: str = "default"
    n: int = 64
    guidance: float = 1.0
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    schedule_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        for key in ("steps", "n"):
            if getattr(self, key) < 1:
                raise ValueError(f"sample.{key} must be >= 1; got {getattr(self, key)}")
        if not math.isfinite(self.guidance):
            raise ValueError(f"sample.guidance must be a finite number (1 = none); got {self.guidance}")


#: what a run trains: a diffusion model, or one of the baselines of difflab.baselines (its registry's names)
FAMILIES = ("diffusion", "vae", "gan", "pixelcnn")


@dataclass
class RunConfig:
    """family: diffusion, or a baseline (vae | gan | pixelcnn) whose constructor options are model.options
    (process, loss and the rest of model are then unused; sample.n and seed set its preview grids)."""

    data: DataConfig = field(default_factory=DataConfig)
    process: ProcessConfig = field(default_factory=ProcessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    distill: DistillConfig | None = None  # set for a run made by `difflab distill` (config/distill.py)
    family: str = "diffusion"

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"unknown family {self.family!r}; valid families are: {', '.join(FAMILIES)}")


# ---------------------------------------------------------------- the guidance classifier of a run

CLASSIFIER_DATA_KEYS = ("in_channels", "num_classes", "image_size")  # set from the data, not by options


def _classifier_train_defaults() -> TrainConfig:
    # Digits on a CPU: a few thousand steps of 128 images; EMA half-life of ~80 steps.
    return TrainConfig(lr=1e-3, warmup_steps=100, batch_size=128, ema=10_000, max_steps=4000, log_every=50,
                       sample_every=0, ckpt_every=500, keep_last=2, p_uncond=0.0)


def _classifier_net_defaults() -> dict[str, Any]:
    # ~0.2M parameters: two levels (8x8, 4x4 on digits), attention at 4x4 and in the middle, ADM's
    # attention pooling.
    return {"base_channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1, "attention_resolutions": [4],
            "num_heads": 4, "dropout": 0.0, "pool": "attention"}


@dataclass
class ClassifierConfig:
    """Settings of a run's classifier (`difflab train-classifier`): difflab.nets.NoisyClassifier `options`
    (in_channels, num_classes and image_size come from the data), the Trainer's `train` settings (class
    labels are the target: no condition dropout), and the times `eval_times` at which held-out accuracy
    is measured on at most `eval_items` items."""

    options: dict[str, Any] = field(default_factory=_classifier_net_defaults)
    train: TrainConfig = field(default_factory=_classifier_train_defaults)
    eval_times: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75])
    eval_items: int = 2000

    def __post_init__(self):
        fixed = sorted(set(self.options) & set(CLASSIFIER_DATA_KEYS))
        if fixed:
            raise ValueError(f"classifier options {fixed} are set from the run's data; drop them from options")
        if self.train.p_uncond != 0.0:
            raise ValueError("a classifier trains on class labels with no condition dropout: "
                             "leave train.p_uncond at 0")
        if not self.eval_times or not all(0.0 <= t <= 1.0 for t in self.eval_times):
            raise ValueError(f"eval_times must be a non-empty list of times in [0, 1]; got {self.eval_times}")
        if self.eval_items < 1:
            raise ValueError(f"eval_items must be >= 1; got {self.eval_items}")


@dataclass
class ClassifierRun:
    """What a classifier checkpoint's config.yaml holds: its settings plus the run's process, loss time
    density and data it was trained for, so the classifier can be rebuilt without the run's config."""

    classifier: ClassifierConfig
    process: ProcessConfig
    loss: LossConfig
    data: DataConfig
    num_classes: int
    data_shape: list[int]
