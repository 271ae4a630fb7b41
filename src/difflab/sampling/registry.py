"""The sampler registry: names -> pure sampler functions, and which of them are deterministic."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import Tensor

from difflab.sampling.adaptive import probability_flow
from difflab.sampling.bespoke import bespoke
from difflab.sampling.consistency import consistency
from difflab.sampling.ddpm import ddim, ddpm
from difflab.sampling.deis import deis, ipndm, lms, plms
from difflab.sampling.dpm_solver import dpmpp_2m, dpmpp_2m_sde, dpmpp_3m, dpmpp_3m_sde, dpmpp_sde
from difflab.sampling.edm import euler, heun
from difflab.sampling.meanflow import meanflow
from difflab.sampling.sde import euler_maruyama, predictor_corrector
from difflab.sampling.unipc import unipc

SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "euler": euler,
    "heun": heun,
    "ddim": ddim,
    "ddpm": ddpm,
    "dpmpp_2m": dpmpp_2m,
    "dpmpp_3m": dpmpp_3m,
    "dpmpp_2m_sde": dpmpp_2m_sde,
    "dpmpp_3m_sde": dpmpp_3m_sde,
    "dpmpp_sde": dpmpp_sde,
    "unipc": unipc,
    "deis": deis,
    "ipndm": ipndm,
    "plms": plms,
    "lms": lms,
    "bespoke": bespoke,
    "euler_maruyama": euler_maruyama,
    "pc": predictor_corrector,
    "adaptive": probability_flow,
    "consistency": consistency,
    "meanflow": meanflow,
}
#: the samplers that draw noise with their default options; every other one is a deterministic function of x_T
_DRAW_NOISE = {ddpm, dpmpp_2m_sde, dpmpp_3m_sde, dpmpp_sde, euler_maruyama, predictor_corrector, consistency}
DETERMINISTIC = tuple(name for name, fn in SAMPLERS.items() if fn not in _DRAW_NOISE)
STOCHASTIC = tuple(name for name, fn in SAMPLERS.items() if fn in _DRAW_NOISE)


def sampler_options(name: str) -> set[str]:
    """The keyword options a sampler accepts beyond the common ones (cond, generator, callback)."""
    common = {"cond", "generator", "callback"}
    params = inspect.signature(SAMPLERS[name]).parameters.values()
    return {p.name for p in params if p.kind is p.KEYWORD_ONLY} - common
