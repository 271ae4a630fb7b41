"""Honest NFE: a denoiser wrapper that counts its calls (one per call, whatever the batch)."""

from __future__ import annotations

from torch import Tensor


class CountingDenoiser:
    """Forwards calls to a denoiser and counts them in `nfe`. Wrapping an already counted denoiser adds to
    neither count twice: each wrapper counts the calls that pass through it."""

    def __init__(self, denoiser):
        self.denoiser = denoiser
        self.parameterization = denoiser.parameterization
        self.process = denoiser.process
        self.nfe = 0

    def __call__(self, x: Tensor, t: Tensor, cond=None) -> Tensor:
        self.nfe += 1
        return self.denoiser(x, t, cond)
