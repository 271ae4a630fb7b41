"""Exact denoisers and the studies built on them (memorization, creativity, sampler benchmarks)."""

from difflab.analysis.gaussian_mixture import (
    ExactMixtureDenoiser,
    GaussianMixture,
    empirical_mixture,
    image_like_mixture,
    ring_mixture,
)

__all__ = ["ExactMixtureDenoiser", "GaussianMixture", "empirical_mixture", "image_like_mixture", "ring_mixture"]
