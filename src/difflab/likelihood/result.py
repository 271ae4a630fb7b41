"""One result type for every likelihood, nats to bits/dim, and uniform dequantization of discrete data.

Bits per dimension (the literature's convention, e.g. Ho et al. 2020, Song et al. 2021, Kingma et al. 2021):
data with L levels are scaled to [-1, 1], level j at x = -1 + j * Delta with bin width Delta = 2 / (L - 1)
(digits: L = 17, Delta = 1/8; 8-bit images: L = 256, Delta = 2/255). A continuous density p on the
dequantized data x + Delta (u - 1/2), u ~ U[0, 1]^D, bounds the discrete model (Theis et al. 2016):

    -log P(x) <= E_u[-log p(x + Delta (u - 1/2))] - D log Delta,
    bits/dim   = (-log p(x~) - D log Delta) / (D ln 2),

which is the usual bits/dim of data on the integer grid {0, ..., L-1} with unit bins. Without levels
(continuous data) bits/dim is -log p(x) / (D ln 2).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from difflab.utils.errors import DifflabError


class LikelihoodResult(NamedTuple):
    """Per-sample negative log-likelihood (or its bound) in nats, its Monte-Carlo standard error (0 where
    the estimate is exact), and both in bits/dim; `nfe` counts denoiser evaluations for the batch."""

    nll: Tensor
    nll_stderr: Tensor
    bits_per_dim: Tensor
    bits_per_dim_stderr: Tensor
    nfe: int


def bin_width(levels: int) -> float:
    """Delta = 2 / (L - 1): the spacing of L levels scaled to [-1, 1]."""
    if not isinstance(levels, int) or levels < 2:
        raise DifflabError(f"levels must be an integer >= 2 (digits have 17, 8-bit images 256); got {levels!r}")
    return 2.0 / (levels - 1)


def check_levels(x: Tensor, levels: int) -> None:
    """DifflabError unless every value of x lies on the L levels of [-1, 1] (to 1e-4 of a bin)."""
    delta = bin_width(levels)
    j = (x.double() + 1) / delta
    off = (j - j.round()).abs().max() if x.numel() else torch.tensor(0.0)
    if float(off) > 1e-4 or float(j.min()) < -1e-4 or float(j.max()) > levels - 1 + 1e-4:
        raise DifflabError(
            f"data are not on the {levels} declared levels of [-1, 1] (spacing 2/{levels - 1}); "
            "pass the data's own number of levels, or levels=None for continuous data"
        )


def dequantize(x: Tensor, levels: int, generator: torch.Generator | None = None) -> Tensor:
    """Uniform dequantization x + Delta (u - 1/2), u ~ U[0, 1]^D, in float64 (checks the levels first)."""
    check_levels(x, levels)
    u = torch.rand(x.shape, generator=generator, dtype=torch.float64, device=x.device)
    return x.double() + bin_width(levels) * (u - 0.5)


def make_result(nll: Tensor, stderr: Tensor, dim: int, levels: int | None, nfe: int) -> LikelihoodResult:
    """Package a continuous NLL (nats, per sample): add -D log Delta when the data have `levels`."""
    nll = nll.double()
    if levels is not None:
        nll = nll - dim * math.log(bin_width(levels))
    scale = dim * math.log(2)
    stderr = stderr.double().expand_as(nll)
    return LikelihoodResult(nll, stderr, nll / scale, stderr / scale, int(nfe))
