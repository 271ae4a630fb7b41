"""Baseline registry: family name -> (builder, make_objective), and the checked builder.

BASELINES["pixelcnn" | "vae" | "gan"] = (cls, make_objective) where cls(data_shape, levels, **options)
builds the model (a difflab.baselines.base.Baseline) and make_objective(model, loss_fn, config,
accelerator) is the trainer's MakeObjective (loss_fn is None for baselines). `check_baseline_options`
checks option names and types against the constructor's signature (difflab.utils.keywords) before
anything is built, so `--set model.options.widht=64` gets one message listing the valid options.
"""

from __future__ import annotations

from collections.abc import Callable

from difflab.baselines.base import Baseline
from difflab.baselines.gan import DCGAN
from difflab.baselines.gan_objective import GANObjective
from difflab.baselines.objective import likelihood_objective
from difflab.baselines.pixelcnn import PixelCNN
from difflab.baselines.vae import VAE
from difflab.utils.errors import check_choice
from difflab.utils.keywords import check_keywords

BASELINES: dict[str, tuple[Callable[..., Baseline], Callable]] = {
    "pixelcnn": (PixelCNN, likelihood_objective),
    "vae": (VAE, likelihood_objective),
    "gan": (DCGAN, GANObjective),
}

_POSITIONAL = ("data_shape", "levels")  # given by the data, never by model.options


def check_baseline_options(name: str, options: dict) -> dict:
    """options for BASELINES[name]'s builder, checked (names, types) and coerced (2.0 -> 2)."""
    build, _ = BASELINES[check_choice("baseline", name, BASELINES)]
    return check_keywords(build, options, f"baseline {name!r} (model.options)", skip=_POSITIONAL)


def build_baseline(name: str, data_shape, levels: int | None, **options) -> Baseline:
    """BASELINES[name]'s model for data of `data_shape` with `levels` discrete levels (None: continuous)."""
    build, _ = BASELINES[check_choice("baseline", name, BASELINES)]
    return build(data_shape, levels, **check_baseline_options(name, options))


def baseline_objective(name: str) -> Callable:
    """BASELINES[name]'s MakeObjective, for Trainer(..., objective=...)."""
    return BASELINES[check_choice("baseline", name, BASELINES)][1]
