"""Likelihoods of diffusion models: the probability-flow ODE, the continuous-time ELBO, the discrete bound."""

from difflab.likelihood.ode import DIVERGENCES, PROBES, ode_log_likelihood
from difflab.likelihood.result import LikelihoodResult, bin_width, check_levels, dequantize

__all__ = [
    "DIVERGENCES",
    "PROBES",
    "LikelihoodResult",
    "bin_width",
    "check_levels",
    "dequantize",
    "ode_log_likelihood",
]
