"""The optimizer-step arithmetic every training objective shares (diffusion, baselines, autoencoders)."""

from __future__ import annotations

import torch
from torch import Tensor


def warmup_factor(step: int, warmup_steps: int) -> float:
    """LR multiplier of the step-th update (0-based): min(1, (step + 1) / warmup_steps), linear warm-up
    (Goyal et al. 2017) that reaches the full rate at update warmup_steps - 1; 1 without warm-up."""
    return 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)


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
