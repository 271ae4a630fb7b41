"""Training objectives: the object that owns its models' update (loss, backward, optimizer step).

The trainer's loop is the same for every model family: draw micro-batches, ask the objective for one
update, keep the EMA, log, preview, checkpoint. What differs lives here. `DenoisingObjective` is
seed 001's Algorithm 1 generalized by the loss callable:

    for each of grad_accum micro-batches:  x0, cond = prepare(batch);  L = mean_i loss_fn(D, x0, cond)_i / grad_accum;
                                           backward(L)    (DDP all-reduces on the last micro-batch)
    clip ||g|| to grad_clip;  AdamW step with lr * warmup_factor(step) * decay_factor(step).

A GAN objective (two optimizers, alternating updates) or a distillation objective (a frozen teacher
beside the student) implements the same three methods: `update`, `state_dict`, `load_state_dict`,
and exposes `model`, the module whose EMA is kept and whose weights are checkpointed.

An objective may also expose `log_stats() -> dict[str, float]`: the trainer calls it at every log step
(train/loop.py, on every process) and adds the returned scalars to that step's log record, e.g. an
autoencoder's rec / kl / d_loss. It returns the means since its previous call and resets them, so each
record covers the steps since the last one; it should sync the device once (stack, then .tolist()), and
its names must not reuse the trainer's own keys (step, loss, lr, grad_norm, images_per_s, images_seen,
elapsed), which they would overwrite. Without the method the record holds the trainer's keys only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Protocol

import torch
from accelerate import Accelerator
from torch import Tensor, nn

from difflab.param.denoiser import Denoiser
from difflab.train.settings import TrainConfig
from difflab.utils.errors import DifflabError
from difflab.utils.optim import check_decay, grad_norm_of, load_optimizer, lr_factor

LossFn = Callable[..., Tensor]
Batches = Iterator[tuple[Tensor, dict | None]]  # prepared micro-batches (x0, cond) on the device


class Objective(Protocol):
    """What the trainer needs of an objective."""

    model: nn.Module

    def update(self, batches: Batches, generator: torch.Generator, need_norm: bool,
               commit: Callable[[], contextlib.AbstractContextManager]) -> tuple[Tensor, Tensor | None, float]:
        """One optimizer step from the next micro-batches; (loss, grad norm or None, lr) as device
        tensors / floats. The parameter update itself runs inside `commit()` (not interruptible)."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...

    # optional: `milestones`, a set of steps at which the trainer writes a checkpoint that is never pruned;
    # `ema_images()`, the images the EMA's ramp-up counts before this update (default: all images seen);
    # `bind_ema(ema)`, called once with the trainer's difflab.train.ema.EMA (e.g. to restart from it)


class _TrainedDenoiser(Denoiser):
    """The prepared model (DDP-wrapped and/or compiled) seen through the denoiser contract.

    DDP hides the wrapped module's attributes, and a forward that bypassed DDP would skip its gradient
    all-reduce; this view calls the wrapper and carries the raw model's process and parameterization.
    """

    def __init__(self, forward: nn.Module, raw: nn.Module):
        self.forward, self.raw = forward, raw

    @property
    def process(self):
        return self.raw.process

    @property
    def parameterization(self):
        return self.raw.parameterization

    def __call__(self, x: Tensor, t: Tensor, cond=None) -> Tensor:
        return self.forward(x, t, cond)


class DenoisingObjective:
    """AdamW on the mean of `loss_fn`'s per-sample losses, with accumulation, clipping and warm-up.

    loss_fn(model, x0, cond=None, generator=None) -> per-sample losses (B,) (e.g.
    difflab.objectives.DiffusionLoss). The model is moved to the accelerator's device and wrapped by
    it (DDP across processes, compiled when config.compile).
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, config: TrainConfig, accelerator: Accelerator):
        self.model, self.loss_fn, self.config, self.accelerator = model, loss_fn, config, accelerator
        self.params = list(model.parameters())  # gathered once: a module walk per step costs ~0.3 ms
        optimizer = torch.optim.AdamW(self.params, lr=config.lr, betas=config.betas,
                                      weight_decay=config.weight_decay)
        check_decay(config)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.lr_factor)
        self.ddp_model, self.optimizer = accelerator.prepare(model, optimizer)
        forward = torch.compile(self.ddp_model) if config.compile else self.ddp_model
        self.trained = _TrainedDenoiser(forward, model)


    def lr_factor(self, step: int) -> float:
        """The LR multiplier of the step-th update (0-based): the linear warm-up and the config's decay
        (difflab.utils.optim.lr_factor; a subclass may add its own)."""
        return lr_factor(step, self.config)

    def _backward(self, batches: Batches, generator: torch.Generator) -> Tensor:
        """Accumulate the gradients of grad_accum micro-batches; returns the summed loss (device)."""
        acc, accum = self.accelerator, self.config.grad_accum
        total = None
        for i in range(accum):
            x0, cond = next(batches)
            with contextlib.nullcontext() if i == accum - 1 else acc.no_sync(self.ddp_model):
                per_sample = self.loss_fn(self.trained, x0, cond, generator=generator)
                if per_sample.shape != x0.shape[:1]:
                    raise DifflabError(
                        f"loss_fn must return unreduced per-sample losses of shape ({x0.shape[0]},); "
                        f"got {tuple(per_sample.shape)}"
                    )
                loss = per_sample.float().mean() / accum
                acc.backward(loss)
            total = loss.detach() if total is None else total + loss.detach()
        return total

    def update(self, batches, generator, need_norm, commit):
        try:
            total = self._backward(batches, generator)
        except BaseException:
            self.optimizer.zero_grad(set_to_none=True)  # an interrupted step leaves no stray gradients
            raise
        with commit():
            clip = self.config.grad_clip
            grad_norm = self.accelerator.clip_grad_norm_(self.params, clip) if clip else None
            if grad_norm is None and need_norm:
                grad_norm = grad_norm_of(self.params)
            lr = self.scheduler.get_last_lr()[0]
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        return total, grad_norm, lr

    def state_dict(self) -> dict:
        """Optimizer, LR-scheduler and grad-scaler states: plain tensors and numbers (trainer.pt)."""
        scaler = self.accelerator.scaler
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None}

    def load_state_dict(self, state: dict) -> None:
        """The saved optimizer moments and schedule position under the config's lr, betas and weight decay
        (utils.optim.load_optimizer: a resume with --set train.lr=... trains at the new rate)."""
        c = self.config
        load_optimizer(self.optimizer, self.scheduler, state["optimizer"], state["scheduler"], c.lr, c.betas,
                       c.weight_decay)
        if self.accelerator.scaler is not None and state["scaler"] is not None:
            self.accelerator.scaler.load_state_dict(state["scaler"])
