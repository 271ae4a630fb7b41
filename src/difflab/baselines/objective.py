"""The objective of the likelihood baselines (PixelCNN, VAE): AdamW on the mean per-dimension loss.

A likelihood baseline's forward(x, cond, generator=...) returns its per-image training loss in nats
per dimension (PixelCNN: -log P(x) / D exactly; VAE: -ELBO / D). The trainer's DenoisingObjective
already owns AdamW, accumulation, clipping, warm-up and the DDP wrapping; the loss handed to it calls
the prepared (DDP-wrapped / compiled) module's forward, so gradients are all-reduced as for a denoiser.
"""

from __future__ import annotations

from accelerate import Accelerator
from torch import Tensor, nn

from difflab.train.objective import DenoisingObjective
from difflab.train.settings import TrainConfig


def _own_loss(trained, x0: Tensor, cond=None, generator=None) -> Tensor:
    """The model's own per-image loss through the prepared wrapper (`trained.forward`: DDP / compiled)."""
    return trained.forward(x0, cond, generator=generator)


def likelihood_objective(model: nn.Module, loss_fn, config: TrainConfig, accelerator: Accelerator) -> DenoisingObjective:
    """MakeObjective for PixelCNN and VAE: loss_fn is ignored (None for baselines)."""
    return DenoisingObjective(model, _own_loss, config, accelerator)
