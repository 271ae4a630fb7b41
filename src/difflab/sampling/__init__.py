"""Samplers: pure functions sampler(denoiser, x, ts, *, cond, generator, callback, **options) -> x, time grids
built by separate functions, and `sample()`, the one entry point (re-exported as difflab.sample)."""

from difflab.sampling.adaptive import probability_flow
from difflab.sampling.api import (
    DEFAULT,
    DEFAULT_SAMPLER,
    DEFAULT_SCHEDULE,
    DEFAULT_STEPS,
    CountingDenoiser,
    SampleResult,
    default_sampler,
    default_schedule,
    resolve_sampler,
    sample,
)
from difflab.sampling.brownian import BrownianNoise
from difflab.sampling.core import GaussianNoise, NoiseSource, Step
from difflab.sampling.ddpm import ddim, ddpm
from difflab.sampling.deis import deis, ipndm, lms, plms
from difflab.sampling.dpm_solver import dpmpp_2m, dpmpp_2m_sde, dpmpp_3m, dpmpp_3m_sde, dpmpp_sde
from difflab.sampling.edm import euler, heun
from difflab.sampling.fitted import FittedGrid
from difflab.sampling.grids import (
    GRIDS,
    check_grid,
    discrete,
    karras,
    make_grid,
    shift_time,
    shifted,
    time_polynomial,
    uniform_log_snr,
    uniform_time,
    user_times,
)
from difflab.sampling.optimize import GridFamily, fit_grid
from difflab.sampling.registry import DETERMINISTIC, SAMPLERS, STOCHASTIC, sampler_options
from difflab.sampling.sde import euler_maruyama, predictor_corrector
from difflab.sampling.unipc import unipc

__all__ = [
    "DEFAULT",
    "DEFAULT_SAMPLER",
    "DEFAULT_SCHEDULE",
    "DEFAULT_STEPS",
    "DETERMINISTIC",
    "GRIDS",
    "SAMPLERS",
    "STOCHASTIC",
    "BrownianNoise",
    "CountingDenoiser",
    "FittedGrid",
    "GaussianNoise",
    "GridFamily",
    "NoiseSource",
    "SampleResult",
    "Step",
    "check_grid",
    "ddim",
    "ddpm",
    "deis",
    "default_sampler",
    "default_schedule",
    "discrete",
    "dpmpp_2m",
    "dpmpp_2m_sde",
    "dpmpp_3m",
    "dpmpp_3m_sde",
    "dpmpp_sde",
    "euler",
    "euler_maruyama",
    "fit_grid",
    "heun",
    "ipndm",
    "karras",
    "lms",
    "make_grid",
    "plms",
    "resolve_sampler",
    "predictor_corrector",
    "probability_flow",
    "sample",
    "sampler_options",
    "shift_time",
    "shifted",
    "time_polynomial",
    "uniform_log_snr",
    "uniform_time",
    "unipc",
    "user_times",
]
