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
