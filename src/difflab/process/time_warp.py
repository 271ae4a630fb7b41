"""Time warps shared by training-time densities and sampling grids."""

from __future__ import annotations

import torch
from torch import Tensor

from difflab.utils.errors import DifflabError


def shift_time(t: Tensor, shift: float) -> Tensor:
    """Resolution shift of seed 003 (Esser et al. 2024, SD3 eq. 23): t' = s t / (1 + (s - 1) t).

    s > 1 moves time toward noise, which high-resolution images need because neighbouring pixels
    share information (s = sqrt(m / n) for m pixels against a base resolution of n). t = 0 and t = 1
    are fixed points; the map is increasing for every s > 0.
    """
    if not shift > 0:
        raise DifflabError(f"time shift must be positive; got {shift!r}")
    t = torch.as_tensor(t)
    return shift * t / (1 + (shift - 1) * t)
