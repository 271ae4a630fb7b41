"""Two-dimensional toy distributions, the test bench of every sampler and loss in 2-D.

Each distribution is drawn vectorized from an optional torch.Generator and standardized with
*analytic* moments: every one has mean exactly 0 and E||x||^2 = 2 (unit root-mean-square per
coordinate), so one noise schedule fits them all (a VP process with sigma(1) = 1 turns each into
noise of the same scale, seed 001's forward process).

Raw shapes before standardization (noise is Gaussian, per coordinate, in raw units):

* "8gaussians": a ring of 8 equally weighted Gaussians at angles 2 pi k / 8 (k = 0 at +x), radius
  EIGHT_GAUSSIANS_RADIUS = sqrt(2 (1 - s^2)) and per-coordinate std s = EIGHT_GAUSSIANS_STD = 0.2,
  so the per-coordinate variance r^2 / 2 + s^2 is exactly 1 and the covariance is the identity.
  Its exact mixture parameters come from `eight_gaussians_mixture()`: with them the analysis layer
  builds the exact Gaussian-mixture denoiser (seed 000's mixture formula). Label = component.
* "moons": two interleaved half circles (cos th, sin th) and (1 - cos th, 1/2 - sin th), th ~ U[0, pi],
  noise 0.1; raw mean (1/2, 1/4), raw E||x||^2 = 1 + 5/8 - 1/pi + 2 * 0.1^2. Label = moon.
* "swissroll": t (cos t, sin t), t ~ U[3 pi / 2, 9 pi / 2] (scikit-learn's range), noise 0.5; mean and
  second moment from the antiderivatives of t cos t, t sin t and t^2. No labels.
* "checkerboard": uniform on the 8 cells (i + j even) of a 4 x 4 board on [-2, 2]^2; each marginal is
  U[-2, 2], so raw E||x||^2 = 8 / 3. Label = cell (0..7).
* "spiral": two arms +-th (cos th, sin th), th = 3 pi sqrt(u), u ~ U[0, 1] (uniform along the arc),
  noise 0.4; the arms are mirror images so the mean is 0, raw E||x||^2 = (3 pi)^2 / 2 + 2 * 0.4^2.
  Label = arm.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from difflab.utils.errors import DifflabError, check_choice
from difflab.utils.tensors import f64

TOY_NAMES = ("8gaussians", "checkerboard", "moons", "spiral", "swissroll")
TOY_NUM_CLASSES: dict[str, int | None] = {
    "8gaussians": 8,
    "checkerboard": 8,
    "moons": 2,
    "spiral": 2,
    "swissroll": None,
}

EIGHT_GAUSSIANS_STD = 0.2
EIGHT_GAUSSIANS_RADIUS = math.sqrt(2.0 * (1.0 - EIGHT_GAUSSIANS_STD**2))
MOONS_NOISE = 0.1
SWISSROLL_RANGE = (1.5 * math.pi, 4.5 * math.pi)
SWISSROLL_NOISE = 0.5
SPIRAL_THETA_MAX = 3.0 * math.pi
SPIRAL_NOISE = 0.4


class MixtureParameters(NamedTuple):
    """weights (K,), means (K, D), per-coordinate variances (K, D); float64."""

    weights: Tensor
    means: Tensor
    variances: Tensor


def eight_gaussians_mixture() -> MixtureParameters:
    """The exact parameters of "8gaussians" in standardized units (what `sample_toy` draws from)."""
    angles = 2.0 * math.pi * torch.arange(8, dtype=f64) / 8
    means = EIGHT_GAUSSIANS_RADIUS * torch.stack([angles.cos(), angles.sin()], dim=1)
    return MixtureParameters(
        weights=torch.full((8,), 1.0 / 8, dtype=f64),
        means=means,
        variances=torch.full((8, 2), EIGHT_GAUSSIANS_STD**2, dtype=f64),
    )


def _standardize(raw: Tensor, mean: tuple[float, float], second_moment: float) -> Tensor:
    """(raw - m) / c with c^2 = (E||raw||^2 - ||m||^2) / 2, so the result has mean 0 and E||x||^2 = 2."""
    m = torch.tensor(mean, dtype=f64)
    c = math.sqrt((second_moment - float(m.square().sum())) / 2.0)
    return (raw - m) / c


def _uniform(n: int, generator: torch.Generator | None) -> Tensor:
    return torch.rand(n, generator=generator, dtype=f64)


def _noise(n: int, std: float, generator: torch.Generator | None) -> Tensor:
    return std * torch.randn(n, 2, generator=generator, dtype=f64)


def _eight_gaussians(n: int, g: torch.Generator | None) -> tuple[Tensor, Tensor]:
    w, mu, var = eight_gaussians_mixture()
    comp = torch.multinomial(w, n, replacement=True, generator=g)
    return mu[comp] + var[comp].sqrt() * torch.randn(n, 2, generator=g, dtype=f64), comp


def _moons(n: int, g: torch.Generator | None) -> tuple[Tensor, Tensor]:
    moon = torch.randint(2, (n,), generator=g)
    th = math.pi * _uniform(n, g)
    upper = torch.stack([th.cos(), th.sin()], dim=1)
    lower = torch.stack([1.0 - th.cos(), 0.5 - th.sin()], dim=1)
    raw = torch.where(moon[:, None] == 0, upper, lower) + _noise(n, MOONS_NOISE, g)
    second = 1.0 + 0.625 - 1.0 / math.pi + 2 * MOONS_NOISE**2
    return _standardize(raw, (0.5, 0.25), second), moon


def _swissroll(n: int, g: torch.Generator | None) -> tuple[Tensor, None]:
    a, b = SWISSROLL_RANGE
    t = a + (b - a) * _uniform(n, g)
    raw = t[:, None] * torch.stack([t.cos(), t.sin()], dim=1) + _noise(n, SWISSROLL_NOISE, g)
    # E[t cos t] and E[t sin t] over U[a, b] from the antiderivatives cos t + t sin t, sin t - t cos t.
    mean_x = ((math.cos(b) + b * math.sin(b)) - (math.cos(a) + a * math.sin(a))) / (b - a)
    mean_y = ((math.sin(b) - b * math.cos(b)) - (math.sin(a) - a * math.cos(a))) / (b - a)
    second = (b**3 - a**3) / (3 * (b - a)) + 2 * SWISSROLL_NOISE**2
    return _standardize(raw, (mean_x, mean_y), second), None


def _checkerboard(n: int, g: torch.Generator | None) -> tuple[Tensor, Tensor]:
    i, j = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
    occupied = ((i + j) % 2 == 0).flatten()
    corners = torch.stack([i.flatten(), j.flatten()], dim=1)[occupied].to(f64) - 2.0  # (8, 2)
    cell = torch.randint(8, (n,), generator=g)
    raw = corners[cell] + torch.rand(n, 2, generator=g, dtype=f64)
    return _standardize(raw, (0.0, 0.0), 8.0 / 3.0), cell


def _spiral(n: int, g: torch.Generator | None) -> tuple[Tensor, Tensor]:
    arm = torch.randint(2, (n,), generator=g)
    th = SPIRAL_THETA_MAX * _uniform(n, g).sqrt()
    sign = 1.0 - 2.0 * arm.to(f64)
    raw = (sign * th)[:, None] * torch.stack([th.cos(), th.sin()], dim=1) + _noise(n, SPIRAL_NOISE, g)
    second = SPIRAL_THETA_MAX**2 / 2 + 2 * SPIRAL_NOISE**2
    return _standardize(raw, (0.0, 0.0), second), arm


_SAMPLERS = {
    "8gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
    "moons": _moons,
    "spiral": _spiral,
    "swissroll": _swissroll,
}


def sample_toy_labeled(
    name: str, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor | None]:
    """Samples (n, 2) and their int64 labels (n,) (component, moon, cell or arm; None for "swissroll")."""
    check_choice("toy distribution", name, TOY_NAMES)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DifflabError(f"the number of toy samples must be a positive integer; got {n!r}")
    x, labels = _SAMPLERS[name](n, generator)
    return x.to(dtype), labels


def sample_toy(
    name: str, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """n samples (n, 2) of the toy distribution `name` (mean 0, E||x||^2 = 2; see the module docstring)."""
    return sample_toy_labeled(name, n, generator, dtype)[0]
