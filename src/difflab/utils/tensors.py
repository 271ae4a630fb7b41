"""Small tensor helpers used across the math core."""

from __future__ import annotations

import torch
from torch import Tensor

float64 = torch.float64


def append_dims(x: Tensor, ndim: int) -> Tensor:
    """Append trailing singleton dims so `x` (shape (B,) or ()) broadcasts against an ndim-D tensor."""
    missing = ndim - x.ndim
    if missing < 0:
        raise ValueError(f"tensor has {x.ndim} dims, more than the target {ndim}")
    return x.reshape(*x.shape, *([1] * missing))


def as_time(t: Tensor | float, batch: int | None = None, device=None, dtype=torch.float64) -> Tensor:
    """Turn a float or tensor time into a tensor; with `batch`, expand a scalar to shape (batch,)."""
    t = torch.as_tensor(t, device=device, dtype=dtype)
    if batch is not None and t.ndim == 0:
        t = t.expand(batch)
    return t
