"""Exact mixtures for the likelihood tests: the 2-D ring and the 64-D image-like mixture under VP-SDE."""

import torch

from difflab.analysis.gaussian_mixture import image_like_mixture, ring_mixture
from difflab.process import VPSDE

PROCESS = VPSDE()
MIXTURES = {"ring": ring_mixture, "64d": lambda: image_like_mixture(64)}


def case(name: str, n: int, seed: int = 0):
    """(mixture, exact denoiser, n exact samples x0, exact -log p_0(x0) in nats (n,))."""
    mix = MIXTURES[name]()
    x, _ = mix.sample(n, torch.Generator().manual_seed(seed))
    return mix, mix.denoiser(PROCESS, "eps"), x, -mix.log_prob_t(x, torch.tensor(0.0), PROCESS)


def exact_prior(mix):
    """The exact log p_1 of the mixture (isolates the ODE's error from the prior's)."""
    return lambda x1: mix.log_prob_t(x1, torch.tensor(1.0), PROCESS)
