"""Training objectives: the denoising loss, its weightings and time densities, the DDPM bound, and the
noise-aware classifier's cross-entropy (classifier guidance)."""

from difflab.objectives.classifier import NoisyClassifierLoss
from difflab.objectives.loss import DiffusionLoss
from difflab.objectives.time_sampling import TIME_SAMPLERS, TimeSampler
from difflab.objectives.vlb import (
    discretized_gaussian_nll,
    gaussian_kl,
    prior_kl,
    vlb_bits_per_dim,
    vlb_term,
)
from difflab.objectives.weighting import WEIGHTING_NAMES, WEIGHTINGS

__all__ = [
    "TIME_SAMPLERS",
    "WEIGHTINGS",
    "WEIGHTING_NAMES",
    "DiffusionLoss",
    "NoisyClassifierLoss",
    "TimeSampler",
    "discretized_gaussian_nll",
    "gaussian_kl",
    "prior_kl",
    "vlb_bits_per_dim",
    "vlb_term",
]
