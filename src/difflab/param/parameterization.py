"""Parameterizations: what the network predicts, as a linear combination y = c(t) x0 + d(t) eps.

Seed 003's generalized diffusion trains f(x_t, t) to regress y_gt = c(t) x + d(t) z. The four choices:

| name     | y                               | (c, d)                | source                          |
| eps      | eps                             | (0, 1)                | Ho et al. 2020, seeds 000/001   |
| x0       | x0                              | (1, 0)                | seed 003 x-prediction           |
| v        | alpha eps - sigma x0            | (-sigma, alpha)       | Salimans & Ho 2022              |
| velocity | alpha' x0 + sigma' eps = dx_t/dt | (alpha', sigma')      | flow matching; z - x for RF     |

Given (x_t, y) the pair (x0, eps) solves  [alpha sigma; c d] [x0; eps] = [x_t; y]:
x0 = (d x_t - sigma y) / (alpha d - sigma c),  eps = (alpha y - c x_t) / (alpha d - sigma c).

Each choice is one small frozen object (a `Parameterization`), looked up once from its name in
`PARAMETERIZATIONS` by `get_parameterization`; this module is the only place in difflab that knows the
prediction types: losses, samplers, guidance and the exact denoiser all call these objects. A
parameterization compares equal to its name ("eps" == EPS), so configs and code that hold names keep working.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor

from difflab.process.base import NoiseProcess
from difflab.utils.errors import check_choice
from difflab.utils.tensors import append_dims


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


@dataclass(frozen=True, eq=False)
class Parameterization:
    """The prediction y = c(t) x0 + d(t) eps of a denoiser, and its exact conversions (module docstring).

    Subclasses give (c, d) and may replace the generic 2x2 inversion by a form that stays finite where
    the generic one is singular. `needs_signal`: x0_hat divides by alpha, so the denoiser says nothing
    about x0 where alpha(t) = 0 (t = 1 of rectified flow).
    """

    name: str
    needs_signal: ClassVar[bool] = False

    def c_d(self, alpha: Tensor, sigma: Tensor, d_alpha: Tensor, d_sigma: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError  # pragma: no cover - every registered parameterization overrides it

    def coefficients(self, process: NoiseProcess, t: Tensor, ndim: int, dtype=torch.float32) -> Coefficients:
        """Evaluate (alpha, sigma, c, d, alpha', sigma') at t in float64 and cast once to `dtype`."""
        t = torch.as_tensor(t)
        a, s = process.alpha(t), process.sigma(t)
        da, ds = process.d_alpha(t), process.d_sigma(t)
        c, d = self.c_d(a, s, da, ds)
        return Coefficients(*(append_dims(v, ndim).to(dtype) for v in (a, s, c, d, da, ds)))

    def target(self, x0: Tensor, eps: Tensor, k: Coefficients) -> Tensor:
        """Regression target y = c x0 + d eps (seed 003's y_gt)."""
        return k.c * x0 + k.d * eps

    def to_x0_eps(self, y: Tensor, x_t: Tensor, k: Coefficients) -> Prediction:
        """(x0_hat, eps_hat) from y by inverting [alpha sigma; c d]."""
        det = k.alpha * k.d - k.sigma * k.c
        return Prediction((k.d * x_t - k.sigma * y) / det, (k.alpha * y - k.c * x_t) / det)

    def x0_error_scale(self, k: Coefficients) -> Tensor:
        """|d x0_hat / d y|: an error e in the target space is an error scale * e in x0 space.

        From x0 = (d x_t - sigma y) / (alpha d - sigma c): the factor is sigma / |alpha d - sigma c|.
        Losses use it to express every weighting as a weight on the x0-space error.
        """
        return k.sigma / (k.alpha * k.d - k.sigma * k.c).abs()

    def __eq__(self, other) -> bool:
        if isinstance(other, str):
            return other == self.name
        return isinstance(other, Parameterization) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def __str__(self) -> str:
        return self.name

    def __reduce__(self):  # copies (an EMA's deepcopy) and pickles are the registry object itself
        return get_parameterization, (self.name,)


class EpsPrediction(Parameterization):
    """y = eps (c, d) = (0, 1); x0 = (x_t - sigma eps) / alpha (Ho et al. 2020)."""

    needs_signal: ClassVar[bool] = True

    def c_d(self, alpha, sigma, d_alpha, d_sigma):
        return torch.zeros_like(alpha), torch.ones_like(alpha)

    def target(self, x0, eps, k):
        return eps

    def to_x0_eps(self, y, x_t, k):
        return Prediction((x_t - k.sigma * y) / k.alpha, y)


class X0Prediction(Parameterization):
    """y = x0, (c, d) = (1, 0); eps = (x_t - alpha x0) / sigma (finite wherever sigma > 0)."""

    def c_d(self, alpha, sigma, d_alpha, d_sigma):
        return torch.ones_like(alpha), torch.zeros_like(alpha)

    def target(self, x0, eps, k):
        return x0

    def to_x0_eps(self, y, x_t, k):
        return Prediction(y, (x_t - k.alpha * y) / k.sigma)

    def x0_error_scale(self, k):
        return torch.ones_like(k.sigma)


class VPrediction(Parameterization):
    """y = alpha eps - sigma x0, (c, d) = (-sigma, alpha) (Salimans & Ho 2022)."""

    def c_d(self, alpha, sigma, d_alpha, d_sigma):
        return -sigma, alpha


class VelocityPrediction(Parameterization):
    """y = dx_t/dt = alpha' x0 + sigma' eps, (c, d) = (alpha', sigma') (flow matching; z - x for rectified flow)."""

    def c_d(self, alpha, sigma, d_alpha, d_sigma):
        return d_alpha, d_sigma


EPS, X0, V, VELOCITY = EpsPrediction("eps"), X0Prediction("x0"), VPrediction("v"), VelocityPrediction("velocity")
PARAMETERIZATIONS: dict[str, Parameterization] = {p.name: p for p in (EPS, X0, V, VELOCITY)}


def get_parameterization(p: str | Parameterization) -> Parameterization:
    """The parameterization object for a registry name (or the object itself); DifflabError lists the names."""
    if isinstance(p, Parameterization):
        return p
    return PARAMETERIZATIONS[check_choice("parameterization", p, PARAMETERIZATIONS)]


def check_parameterization(name: str) -> str:
    """`name` if it names a parameterization, else a DifflabError that lists them."""
    return get_parameterization(name).name


def score(prediction: Prediction, k: Coefficients) -> Tensor:
    """Tweedie (seeds 000, 002): grad log p_t(x_t) = -E[eps | x_t] / sigma."""
    return -prediction.eps / k.sigma


def ode_velocity(prediction: Prediction, k: Coefficients) -> Tensor:
    """Probability-flow ODE velocity dx/dt = alpha' x0_hat + sigma' eps_hat.

    Equal to f(t) x - 1/2 g(t)^2 score (Song et al. 2021, seed 001's probability-flow ODE) because
    x_t = alpha x0_hat + sigma eps_hat holds for every exact conversion.
    """
    return k.d_alpha * prediction.x0 + k.d_sigma * prediction.eps


# ---- name-taking forms, for callers that still hold a name (each looks the object up) ---------------
def coefficients(parameterization, process: NoiseProcess, t: Tensor, ndim: int, dtype=torch.float32) -> Coefficients:
    """get_parameterization(parameterization).coefficients(process, t, ndim, dtype)."""
    return get_parameterization(parameterization).coefficients(process, t, ndim, dtype)


def target(parameterization, x0: Tensor, eps: Tensor, k: Coefficients) -> Tensor:
    """get_parameterization(parameterization).target(x0, eps, k)."""
    return get_parameterization(parameterization).target(x0, eps, k)


def to_x0_eps(parameterization, pred: Tensor, x_t: Tensor, k: Coefficients) -> Prediction:
    """get_parameterization(parameterization).to_x0_eps(pred, x_t, k)."""
    return get_parameterization(parameterization).to_x0_eps(pred, x_t, k)


def x0_error_scale(parameterization, k: Coefficients) -> Tensor:
    """get_parameterization(parameterization).x0_error_scale(k)."""
    return get_parameterization(parameterization).x0_error_scale(k)
