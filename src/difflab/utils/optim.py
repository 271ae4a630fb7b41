"""The optimizer-step arithmetic every training objective shares (diffusion, baselines, autoencoders)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from difflab.utils.errors import DifflabError


def warmup_factor(step: int, warmup_steps: int) -> float:
    """LR multiplier of the step-th update (0-based): min(1, (step + 1) / warmup_steps), linear warm-up
    (Goyal et al. 2017) that reaches the full rate at update warmup_steps - 1; 1 without warm-up."""
    return 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)


def decay_factor(step: int, decay: str, start: int, end: int | None) -> float:
    """LR multiplier of the step-th update after the stable phase: 1 before `start`, then with u = (step -
    start) / (end - start), 1 - u ('linear') or (1 + cos(pi u)) / 2 ('cosine', Loshchilov & Hutter 2017),
    reaching 0 at `end` (max_steps; the last update, step end - 1, keeps a small positive rate); 'none': 1."""
    if decay == "none" or step < start:
        return 1.0
    u = min(1.0, (step - start) / (end - start))
    return 1.0 - u if decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * u))


def check_decay(config) -> None:
    """A decay needs the step where it ends: max_steps, after lr_decay_from. Checked where the schedule is built,
    once the run's limits are known (a resume's --steps sets max_steps after its --set options are read)."""
    if config.lr_decay != "none" and (config.max_steps is None or not config.lr_decay_from < config.max_steps):
        raise DifflabError(f"lr_decay={config.lr_decay} decays the rate from step lr_decay_from="
                           f"{config.lr_decay_from} to 0 at max_steps={config.max_steps}: give a step limit past "
                           "lr_decay_from (--steps or train.max_steps), or set train.lr_decay_from below it")


def lr_factor(step: int, config) -> float:
    """The LR multiplier of a TrainConfig's schedule at the step-th update: warm-up times decay."""
    return warmup_factor(step, config.warmup_steps) * decay_factor(step, config.lr_decay, config.lr_decay_from,
                                                                   config.max_steps)


def grad_norm_of(params: list[Tensor]) -> Tensor:
    """||g||_2 over every parameter that has a gradient: sqrt(sum_p ||g_p||^2), one fused norm per tensor
    (the figure clip_grad_norm_ reports, for runs without clipping)."""
    grads = [p.grad for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def load_optimizer(optimizer, scheduler, state: dict, scheduler_state: dict, lr: float, betas, weight_decay: float) -> None:
    """torch's load of an optimizer and its LambdaLR, then the run's own lr (scaled by the schedule's factor at
    its saved position), betas and weight decay in every group: torch would restore the saved ones, so a
    resume with --set train.lr=... would silently keep the old rate. With unchanged settings this is a no-op."""
    optimizer.load_state_dict(state)
    scheduler.load_state_dict(scheduler_state)
    scheduler.base_lrs = [lr] * len(optimizer.param_groups)
    for group, factor in zip(optimizer.param_groups, scheduler.lr_lambdas, strict=True):
        group.update(initial_lr=lr, lr=lr * factor(scheduler.last_epoch), betas=tuple(betas),
                     weight_decay=weight_decay)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]  # what get_last_lr() reports
