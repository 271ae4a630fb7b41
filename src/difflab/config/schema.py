"""The run configuration: one dataclass per section, validated from YAML and `--set key=value`.

A run is fully described by a RunConfig; it is saved beside every checkpoint, so `difflab sample RUN`
rebuilds exactly the model that was trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

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


@dataclass
class ModelConfig:
    """The network, what it predicts and how it is wrapped into a denoiser.

    conditioning: none | class (labels from the data set) | text (captions through `text_encoder`).
    preconditioning: none (NetworkDenoiser, c_noise = 1000 t) | edm (EDMDenoiser, x0 output).
    """

    network: str = "unet"
    options: dict[str, Any] = field(default_factory=dict)
    parameterization: str = "eps"
    preconditioning: str = "none"
    sigma_data: float = 0.5
    conditioning: str = "none"
    text_encoder: str | None = None


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


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    process: ProcessConfig = field(default_factory=ProcessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
