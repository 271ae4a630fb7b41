"""Shared oracles of the editing tests: a two-mode mixture whose known coordinate decides the mode."""

import torch

from difflab.analysis import GaussianMixture
from difflab.metrics.lowdim import sliced_wasserstein2

f64 = torch.float64


def two_modes() -> GaussianMixture:
    """Modes at (-1, -1) and (1, 1), std 0.3: x1 tells which mode x2 belongs to."""
    return GaussianMixture(torch.ones(2), torch.tensor([[-1.0, -1.0], [1.0, 1.0]], dtype=f64), torch.full((2,), 0.09))


def sw2(a, b) -> float:
    return sliced_wasserstein2(a, b, num_projections=256, generator=torch.Generator().manual_seed(0))
