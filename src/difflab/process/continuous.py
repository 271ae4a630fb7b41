"""Continuous-time processes: VP-SDE, VE-SDE, rectified flow, and user-defined alpha/sigma."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from difflab.process.base import NoiseProcess
from difflab.utils.errors import DifflabError


def _positive(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise DifflabError(f"{name} must be a positive finite number; got {value!r}")
    return float(value)


class VPSDE(NoiseProcess):
    """Variance-preserving SDE of Song et al. 2021 (seed 001): dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw.

    beta(t) = beta_min + t (beta_max - beta_min), so
    log alpha(t) = -1/4 t^2 (beta_max - beta_min) - 1/2 t beta_min,  sigma = sqrt(1 - alpha^2).
    """

    name = "vp"
    t_min = 1e-5

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        self.beta_min = _positive("beta_min", beta_min)
        self.beta_max = _positive("beta_max", beta_max)
        if self.beta_max <= self.beta_min:
            raise DifflabError(f"beta_max ({beta_max}) must exceed beta_min ({beta_min})")

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_min + self._t(t) * (self.beta_max - self.beta_min)

    def _log_alpha(self, t: Tensor) -> Tensor:
        t = self._t(t)
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def alpha(self, t):
        return torch.exp(self._log_alpha(t))

    def sigma(self, t):
        return torch.sqrt(-torch.expm1(2 * self._log_alpha(t)))

    def d_alpha(self, t):
        return -0.5 * self.beta(t) * self.alpha(t)

    def d_sigma(self, t):
        a = self.alpha(t)
        return 0.5 * self.beta(t) * a**2 / self.sigma(t)

    def log_snr(self, t):
        la = self._log_alpha(t)
        return la - 0.5 * torch.log(-torch.expm1(2 * la))

    def t_from_log_snr(self, lam):
        # alpha^2 = sigmoid(2 lambda); solve 1/2 D t^2 + beta_min t + log alpha^2 = 0 for t >= 0
        log_a2 = torch.nn.functional.logsigmoid(2 * torch.as_tensor(lam, dtype=torch.float64))
        d = self.beta_max - self.beta_min
        return (-self.beta_min + torch.sqrt(self.beta_min**2 - 2 * d * log_a2)) / d

    def __repr__(self):
        return f"VPSDE(beta_min={self.beta_min}, beta_max={self.beta_max})"


class VESDE(NoiseProcess):
    """Variance-exploding SDE (Song et al. 2021; seed 003's VE): alpha = 1, sigma(t) = s_min (s_max/s_min)^t.

    Forward SDE dx = g(t) dw with g^2 = d sigma^2 / dt. Defaults are EDM's range [0.002, 80].
    """

    name = "ve"

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0):
        self.sigma_min = _positive("sigma_min", sigma_min)
        self.sigma_max = _positive("sigma_max", sigma_max)
        if self.sigma_max <= self.sigma_min:
            raise DifflabError(f"sigma_max ({sigma_max}) must exceed sigma_min ({sigma_min})")
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def alpha(self, t):
        return torch.ones_like(self._t(t))

    def sigma(self, t):
        return self.sigma_min * torch.exp(self._t(t) * self._log_ratio)

    def d_alpha(self, t):
        return torch.zeros_like(self._t(t))

    def d_sigma(self, t):
        return self.sigma(t) * self._log_ratio

    def log_snr(self, t):
        return -torch.log(self.sigma(t))

    def t_from_log_snr(self, lam):
        lam = torch.as_tensor(lam, dtype=torch.float64)
        return (-lam - math.log(self.sigma_min)) / self._log_ratio

    def prior_std(self) -> float:
        return self.sigma_max

    def __repr__(self):
        return f"VESDE(sigma_min={self.sigma_min}, sigma_max={self.sigma_max})"


class RectifiedFlow(NoiseProcess):
    """Rectified flow / linear interpolation (seed 003): x_t = (1 - t) x + t z, velocity v = z - x."""

    name = "flow"
    t_min = 0.0

    def alpha(self, t):
        return 1.0 - self._t(t)

    def sigma(self, t):
        return self._t(t).clone()

    def d_alpha(self, t):
        return -torch.ones_like(self._t(t))

    def d_sigma(self, t):
        return torch.ones_like(self._t(t))

    def t_from_log_snr(self, lam):
        return torch.sigmoid(-torch.as_tensor(lam, dtype=torch.float64))


class CustomProcess(NoiseProcess):
    """A process from user callables alpha(t), sigma(t) (float64 tensor in, tensor out).

    Derivatives come from autograd and t(lambda) from bisection, so the callables must be
    differentiable torch code and lambda(t) = log(alpha/sigma) must decrease in t.
    """

    name = "custom"

    def __init__(self, alpha: Callable[[Tensor], Tensor], sigma: Callable[[Tensor], Tensor], t_min: float = 0.0):
        if not (callable(alpha) and callable(sigma)):
            raise DifflabError("CustomProcess needs two callables, alpha(t) and sigma(t)")
        self._alpha, self._sigma, self.t_min = alpha, sigma, float(t_min)
        probe = torch.linspace(max(self.t_min, 1e-3), 1 - 1e-3, 65, dtype=torch.float64)
        lam = self.log_snr(probe)
        if not bool(torch.all(lam[1:] < lam[:-1])):
            raise DifflabError("CustomProcess: log(alpha(t)/sigma(t)) must strictly decrease on (0, 1)")

    def alpha(self, t):
        return torch.as_tensor(self._alpha(self._t(t)), dtype=torch.float64)

    def sigma(self, t):
        return torch.as_tensor(self._sigma(self._t(t)), dtype=torch.float64)
