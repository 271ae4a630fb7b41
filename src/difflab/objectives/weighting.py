"""Loss weightings, all written as a weight w_x0(t) on the per-dimension x0-space error ||x0 - x0_hat||^2.

The x0 space is the common currency: a prediction error e in the target space of a parameterization is
an x0 error of x0_error_scale * e (difflab.param), so one weighting means the same thing whatever the
network predicts. With SNR = alpha^2 / sigma^2 and sigma~ = sigma / alpha:

| name       | w_x0(t)                          | equals / source                                             |
| snr        | SNR                              | eps-MSE = DDPM's L_simple (Ho et al. 2020; seed 001 lambda=1 |
|            |                                  | in eps form)                                                |
| sigma2     | SNR                              | seed 001's lambda(t) = sigma_t^2 in lambda/sigma^2 ||eps - eps_theta||^2: |
|            |                                  | the same weighting as snr, kept under the seed's name       |
| min_snr    | min(SNR, gamma)                  | Hang et al. 2023 (Min-SNR-gamma, gamma = 5)                 |
| likelihood | g^2 alpha^2 / sigma^4            | seed 001's lambda(t) = beta(t) = g(t)^2 (Song et al. 2021,  |
|            |                                  | maximum-likelihood training)                                 |
| edm        | (sigma~^2 + sd^2) / (sigma~ sd)^2| Karras et al. 2022, eq. 8 with sigma_data = sd              |

"uniform" (no entry here) is weight 1 on the parameterization's own target: seed 001's L_simple for eps,
seed 003's rectified-flow loss for velocity.

Options are keyword-only and checked: `weighting_options` rejects a misspelt one (`gama=`) with the valid
list. `edm` reads sigma_data from the denoiser it trains when the denoiser has one (EDMDenoiser), so the
weighting and the preconditioner can never disagree (DiffusionLoss checks it).
"""

from __future__ import annotations

import inspect

import torch
from torch import Tensor

from difflab.process.base import NoiseProcess
from difflab.utils.errors import DifflabError


def snr_weight(process: NoiseProcess, t: Tensor) -> Tensor:
    """w = SNR(t) = alpha^2 / sigma^2."""
    return process.snr(t)


def min_snr_weight(process: NoiseProcess, t: Tensor, *, gamma: float = 5.0) -> Tensor:
    """w = min(SNR(t), gamma) (Hang et al. 2023)."""
    return torch.clamp(process.snr(t), max=gamma)


def likelihood_weight(process: NoiseProcess, t: Tensor) -> Tensor:
    """w = g(t)^2 alpha^2 / sigma^4: lambda = g^2 on the score error (Song et al. 2021)."""
    return process.diffusion_sq(t) * process.alpha(t) ** 2 / process.sigma(t) ** 4


def edm_weight(process: NoiseProcess, t: Tensor, *, sigma_data: float = 0.5) -> Tensor:
    """w = (sigma~^2 + sigma_data^2) / (sigma~ sigma_data)^2 with sigma~ = sigma / alpha (Karras et al. eq. 8)."""
    s = process.sigma(t) / process.alpha(t)
    return (s**2 + sigma_data**2) / (s * sigma_data) ** 2


WEIGHTINGS = {
    "snr": snr_weight,
    "sigma2": snr_weight,
    "min_snr": min_snr_weight,
    "likelihood": likelihood_weight,
    "edm": edm_weight,
}
WEIGHTING_NAMES = ("uniform", *WEIGHTINGS)


def weighting_options(name: str) -> dict[str, float]:
    """The options a weighting takes, with their defaults ({} for uniform, snr, sigma2, likelihood)."""
    if name == "uniform":
        return {}
    params = inspect.signature(WEIGHTINGS[name]).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def check_weighting_options(name: str, options: dict) -> dict[str, float]:
    """Reject unknown or non-positive options of weighting `name`; return them as floats."""
    valid = weighting_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        listed = ", ".join(valid) if valid else "none"
        raise DifflabError(f"unknown option {unknown[0]!r} for weighting {name!r}; its options are: {listed}")
    checked = {}
    for key, value in options.items():
        try:
            value = float(value)
        except (TypeError, ValueError):
            value = float("nan")
        if not 0 < value < float("inf"):
            raise DifflabError(f"weighting {name!r} option {key} must be a positive number; got {options[key]!r}")
        checked[key] = value
    return checked
