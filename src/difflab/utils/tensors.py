"""Small tensor helpers used across the math core."""

from __future__ import annotations

import torch
from torch import Tensor

from difflab.utils.errors import DifflabError

#: float64, the dtype of all schedule and solver arithmetic (DESIGN example 10)
f64 = torch.float64


def append_dims(x: Tensor, ndim: int) -> Tensor:
    """Append trailing singleton dims so `x` (shape (B,) or ()) broadcasts against an ndim-D tensor."""
    missing = ndim - x.ndim
    if missing < 0:
        raise DifflabError(f"tensor has {x.ndim} dims, more than the target {ndim}")
    return x.reshape(*x.shape, *([1] * missing))
