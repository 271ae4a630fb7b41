"""Likelihoods of diffusion models: the probability-flow ODE, the continuous-time ELBO, the discrete bound."""

from difflab.likelihood.elbo import T_DENSITIES, continuous_elbo, discrete_vlb
from difflab.likelihood.ode import DIVERGENCES, PROBES, ode_log_likelihood
from difflab.likelihood.result import LikelihoodResult, bin_width, check_levels, dequantize

__all__ = [
    "DIVERGENCES",
    "PROBES",
    "T_DENSITIES",
    "LikelihoodResult",
    "bin_width",
    "check_levels",
    "continuous_elbo",
    "dequantize",
    "discrete_vlb",
    "ode_log_likelihood",
]
