"""Shared cases for the sampler tests: the four processes with one parameterization each (so every
prediction type is exercised), the 2-D ring and a 64-D image-like mixture, and cached exact references."""

from __future__ import annotations

import functools

import torch

from difflab.analysis import image_like_mixture, ring_mixture
from difflab.process import VESDE, VPSDE, DiscreteVP, RectifiedFlow
from difflab.sampling import probability_flow, uniform_log_snr

f64 = torch.float64

# process name -> (process, parameterization, grid end with a finite log-SNR)
CASES = {
    "ddpm": (DiscreteVP(), "eps", 1e-3),
    "vp": (VPSDE(), "v", 1e-5),
    "ve": (VESDE(), "x0", 0.0),
    "flow": (RectifiedFlow(), "velocity", 1e-3),
}
MIXTURES = {"ring": ring_mixture(), "image64": image_like_mixture(dim=64, k=10, seed=0)}


def denoiser(process_name: str, mixture: str = "ring"):
    process, param, _ = CASES[process_name]
    return MIXTURES[mixture].denoiser(process, param)


def x_T(process_name: str, mixture: str = "ring", n: int = 32, seed: int = 0) -> torch.Tensor:
    process = CASES[process_name][0]
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, MIXTURES[mixture].dim, generator=g, dtype=f64) * process.prior_std()


def grid(process_name: str, steps: int) -> torch.Tensor:
    """Uniform log-SNR grid ending at a finite log-SNR, so that no final jump floors the error."""
    process, _, t_end = CASES[process_name]
    return uniform_log_snr(process, steps, t_end=t_end)


@functools.cache
def reference(process_name: str, mixture: str = "ring", n: int = 32) -> torch.Tensor:
    """The probability-flow ODE solved adaptively to 1e-11 from x_T to the grid end."""
    ts = grid(process_name, 1)
    return probability_flow(
        denoiser(process_name, mixture), x_T(process_name, mixture, n), ts, rtol=1e-11, atol=1e-11, method="DOP853"
    )
