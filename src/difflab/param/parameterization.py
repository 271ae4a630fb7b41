"""Parameterizations: what the network predicts, as a linear combination y = c(t) x0 + d(t) eps.

Seed 003's generalized diffusion trains f(x_t, t) to regress y_gt = c(t) x + d(t) z. The four choices:

| name     | y                               | (c, d)                | source                          |
| eps      | eps                             | (0, 1)                | Ho et al. 2020, seeds 000/001   |
| x0       | x0                              | (1, 0)                | seed 003 x-prediction           |
| v        | alpha eps - sigma x0            | (-sigma, alpha)       | Salimans & Ho 2022              |
| velocity | alpha' x0 + sigma' eps = dx_t/dt | (alpha', sigma')      | flow matching; z - x for RF     |

Given (x_t, y) the pair (x0, eps) solves  [alpha sigma; c d] [x0; eps] = [x_t; y]:
x0 = (d x_t - sigma y) / (alpha d - sigma c),  eps = (alpha y - c x_t) / (alpha d - sigma c).
This module is the only place in difflab that branches on the prediction type: losses, samplers,
guidance and the exact denoiser all go through it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from difflab.process.base import NoiseProcess
from difflab.utils.errors import check_choice
from difflab.utils.tensors import append_dims

PARAMETERIZATIONS = ("eps", "x0", "v", "velocity")


class Coefficients(NamedTuple):
    """alpha, sigma and the target coefficients (c, d) at t, shaped to broadcast against the batch."""

    alpha: Tensor
    sigma: Tensor
    c: Tensor
    d: Tensor
    d_alpha: Tensor
    d_sigma: Tensor


class Prediction(NamedTuple):
    """A denoiser's output seen in every space: x0_hat = E[x0 | x_t], eps_hat = E[eps | x_t]."""

    x0: Tensor
    eps: Tensor


def check_parameterization(name: str) -> str:
    return check_choice("parameterization", name, PARAMETERIZATIONS)


def coefficients(
    parameterization: str, process: NoiseProcess, t: Tensor, ndim: int, dtype=torch.float32
) -> Coefficients:
    """Evaluate (alpha, sigma, c, d, alpha', sigma') at t in float64 and cast once to `dtype`."""
    t = torch.as_tensor(t)
    a, s = process.alpha(t), process.sigma(t)
    da, ds = process.d_alpha(t), process.d_sigma(t)
    if parameterization == "eps":
        c, d = torch.zeros_like(a), torch.ones_like(a)
    elif parameterization == "x0":
        c, d = torch.ones_like(a), torch.zeros_like(a)
    elif parameterization == "v":
        c, d = -s, a
    elif parameterization == "velocity":
        c, d = da, ds
    else:
        check_parameterization(parameterization)
    return Coefficients(*(append_dims(v, ndim).to(dtype) for v in (a, s, c, d, da, ds)))


def target(parameterization: str, x0: Tensor, eps: Tensor, k: Coefficients) -> Tensor:
    """Regression target y = c x0 + d eps (seed 003's y_gt)."""
    if parameterization == "eps":
        return eps
    if parameterization == "x0":
        return x0
    return k.c * x0 + k.d * eps


def to_x0_eps(parameterization: str, pred: Tensor, x_t: Tensor, k: Coefficients) -> Prediction:
    """Convert a raw prediction y into (x0_hat, eps_hat) by inverting [alpha sigma; c d].

    eps and x0 use their one-line forms so that they stay finite where the other space is singular
    (x0 from eps needs alpha > 0; eps from x0 needs sigma > 0).
    """
    if parameterization == "eps":
        return Prediction((x_t - k.sigma * pred) / k.alpha, pred)
    if parameterization == "x0":
        return Prediction(pred, (x_t - k.alpha * pred) / k.sigma)
    det = k.alpha * k.d - k.sigma * k.c
    return Prediction((k.d * x_t - k.sigma * pred) / det, (k.alpha * pred - k.c * x_t) / det)


def score(prediction: Prediction, k: Coefficients) -> Tensor:
    """Tweedie (seeds 000, 002): grad log p_t(x_t) = -E[eps | x_t] / sigma."""
    return -prediction.eps / k.sigma


def ode_velocity(prediction: Prediction, k: Coefficients) -> Tensor:
    """Probability-flow ODE velocity dx/dt = alpha' x0_hat + sigma' eps_hat.

    Equal to f(t) x - 1/2 g(t)^2 score (Song et al. 2021, seed 001's probability-flow ODE) because
    x_t = alpha x0_hat + sigma eps_hat holds for every exact conversion.
    """
    return k.d_alpha * prediction.x0 + k.d_sigma * prediction.eps


def x0_error_scale(parameterization: str, k: Coefficients) -> Tensor:
    """|d x0_hat / d y|: an error e in the target space is an error scale * e in x0 space.

    From x0 = (d x_t - sigma y) / (alpha d - sigma c): the factor is sigma / |alpha d - sigma c|.
    Losses use it to express every weighting as a weight on the x0-space error.
    """
    if parameterization == "x0":
        return torch.ones_like(k.sigma)
    return k.sigma / (k.alpha * k.d - k.sigma * k.c).abs()
