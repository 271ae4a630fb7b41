"""The one process abstraction: x_t = alpha(t) x0 + sigma(t) eps, t in [0, 1].

Seed 003 ("generalized diffusion") writes every model as x_t = a(t) x + b(t) z; we call a = alpha and
b = sigma. t = 0 is data, t = 1 is (close to) pure noise. Everything a solver or a loss needs is derived
here from alpha and sigma alone:

* log-SNR  lambda(t) = log(alpha / sigma)  and its inverse t(lambda);
* the forward SDE  dx = f(t) x dt + g(t) dw  with  f = alpha'/alpha,  g^2 = (sigma^2)' - 2 f sigma^2
  (Kingma et al. 2021, VDM, appendix; Song et al. 2021), which reproduces seed 001's VP-SDE;
* the transition x_t | x_s and the posterior q(x_s | x_t, x0) for s < t (seed 004's posterior, in the
  continuous-time form of VDM eq. 30-32).

Schedule arithmetic is done in float64; callers cast the result once.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

from difflab.utils.errors import DifflabError
from difflab.utils.tensors import append_dims

_T_TOL = 1e-9


def check_time(t: Tensor, name: str = "t") -> None:
    """Raise DifflabError if a CPU tensor of times leaves [0, 1] (skipped on accelerators: no host sync)."""
    if t.device.type != "cpu" or t.numel() == 0:
        return
    t = t.detach()
    lo, hi = float(t.min()), float(t.max())
    if lo < -_T_TOL or hi > 1 + _T_TOL or math.isnan(lo) or math.isnan(hi):
        bad = lo if (lo < -_T_TOL or math.isnan(lo)) else hi
        raise DifflabError(f"{name} must lie in [0, 1] (0 = data, 1 = noise); got {bad!r}")


class NoiseProcess(ABC):
    """Base class: subclasses give alpha(t) and sigma(t); derivatives and inverses have defaults.

    Methods accept a float tensor t of any shape and return float64 tensors of the same shape.
    """

    #: short name used by configs and error messages
    name: str = "process"
    #: True when the process is a chain of T discrete steps (t = i / T); samplers may use its grid
    is_discrete: bool = False

    # ---- the two functions that define a process -------------------------------------------------
    @abstractmethod
    def alpha(self, t: Tensor) -> Tensor:
        """Signal scale a(t) of seed 003."""

    @abstractmethod
    def sigma(self, t: Tensor) -> Tensor:
        """Noise scale b(t) of seed 003."""

    # ---- derivatives (autograd by default; subclasses override with closed forms) ---------------
    def _autograd(self, fn, t: Tensor) -> Tensor:
        t64 = self._t(t).detach().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(fn(t64).sum(), t64)
        return grad

    def d_alpha(self, t: Tensor) -> Tensor:
        """d alpha / dt."""
        return self._autograd(self.alpha, t)

    def d_sigma(self, t: Tensor) -> Tensor:
        """d sigma / dt."""
        return self._autograd(self.sigma, t)

    # ---- log-SNR ---------------------------------------------------------------------------------
    def log_snr(self, t: Tensor) -> Tensor:
        """lambda(t) = log(alpha(t) / sigma(t)); decreasing in t."""
        return torch.log(self.alpha(t)) - torch.log(self.sigma(t))

    def snr(self, t: Tensor) -> Tensor:
        """alpha^2 / sigma^2."""
        return torch.exp(2 * self.log_snr(t))

    def t_from_log_snr(self, lam: Tensor) -> Tensor:
        """Inverse of log_snr by vectorized bisection on [0, 1] (closed forms override it)."""
        lam = torch.as_tensor(lam, dtype=torch.float64)
        lo = torch.zeros_like(lam)
        hi = torch.ones_like(lam)
        for _ in range(64):
            mid = 0.5 * (lo + hi)
            above = self.log_snr(mid) > lam  # lambda decreases in t: the root lies to the right
            lo = torch.where(above, mid, lo)
            hi = torch.where(above, hi, mid)
        return 0.5 * (lo + hi)

    @property
    def log_snr_range(self) -> tuple[float, float]:
        """(lambda(1), lambda(t_min)); an infinite end is replaced by its value 1e-4 inside [0, 1]."""
        lo, hi = (float(v) for v in self.log_snr(torch.tensor([1.0, self.t_min], dtype=torch.float64)))
        if not math.isfinite(lo):
            lo = float(self.log_snr(torch.tensor(1 - 1e-4, dtype=torch.float64)))
        if not math.isfinite(hi):
            hi = float(self.log_snr(torch.tensor(max(self.t_min, 1e-4), dtype=torch.float64)))
        return lo, hi

    #: smallest time a solver should step to (t = 0 may have sigma = 0 and an infinite log-SNR)
    t_min: float = 0.0

    @property
    def starts_from_pure_noise(self) -> bool:
        """True when alpha(1) = 0: x_1 holds nothing of x0 (rectified flow), so log-SNR is -inf at t = 1."""
        return float(self.alpha(torch.tensor(1.0, dtype=torch.float64))) == 0.0

    # ---- forward process -------------------------------------------------------------------------
    def sample_xt(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """Closed form q(x_t | x0): x_t = alpha(t) x0 + sigma(t) eps (seeds 000, 003, 004)."""
        if noise.shape != x0.shape:
            raise DifflabError(f"noise shape {tuple(noise.shape)} must equal x0 shape {tuple(x0.shape)}")
        t = torch.as_tensor(t, device=x0.device)
        if t.ndim == 0:
            t = t.expand(x0.shape[0])
        if t.shape != x0.shape[:1]:
            raise DifflabError(f"t has shape {tuple(t.shape)}; expected ({x0.shape[0]},), one time per sample")
        a, s = append_dims(self.alpha(t), x0.ndim), append_dims(self.sigma(t), x0.ndim)
        return (a * x0 + s * noise).to(x0.dtype)

    def prior_std(self) -> float:
        """Standard deviation of the Gaussian x_1 is drawn from at sampling time (sigma(1))."""
        return float(self.sigma(torch.tensor(1.0)))

    # ---- SDE view --------------------------------------------------------------------------------
    def drift_coef(self, t: Tensor) -> Tensor:
        """f(t) = alpha'(t) / alpha(t); the forward SDE drift is f(t) x."""
        return self.d_alpha(t) / self.alpha(t)

    def diffusion_sq(self, t: Tensor) -> Tensor:
        """g(t)^2 = d sigma^2/dt - 2 f(t) sigma^2 (VDM appendix); equals beta(t) for the VP-SDE."""
        s = self.sigma(t)
        return 2 * s * self.d_sigma(t) - 2 * self.drift_coef(t) * s**2

    def sde_drift(self, x: Tensor, t: Tensor) -> Tensor:
        """Forward SDE drift f(t) x (seed 001: -1/2 beta(t) x for VP)."""
        return append_dims(self.drift_coef(t), x.ndim).to(x.dtype) * x

    def sde_diffusion(self, t: Tensor) -> Tensor:
        """Forward SDE diffusion g(t) (seed 001: sqrt(beta(t)) for VP)."""
        return torch.sqrt(torch.clamp(self.diffusion_sq(t), min=0.0))

    # ---- transitions between two times -----------------------------------------------------------
    def transition(self, s: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """(alpha_{t|s}, sigma_{t|s}) of q(x_t | x_s) = N(alpha_{t|s} x_s, sigma_{t|s}^2 I), s < t."""
        a_ts = self.alpha(t) / self.alpha(s)
        var = self.sigma(t) ** 2 - a_ts**2 * self.sigma(s) ** 2
        return a_ts, torch.sqrt(torch.clamp(var, min=0.0))

    def posterior_coefficients(self, s: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q(x_s | x_t, x0) = N(c_xt x_t + c_x0 x0, var) for s < t (seed 004; VDM eq. 30-32).

        c_xt = alpha_{t|s} sigma_s^2 / sigma_t^2,  c_x0 = alpha_s sigma_{t|s}^2 / sigma_t^2,
        var = sigma_{t|s}^2 sigma_s^2 / sigma_t^2.
        """
        a_ts, s_ts = self.transition(s, t)
        sig_s2, sig_t2 = self.sigma(s) ** 2, self.sigma(t) ** 2
        return a_ts * sig_s2 / sig_t2, self.alpha(s) * s_ts**2 / sig_t2, s_ts**2 * sig_s2 / sig_t2

    # ---- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def _t(t) -> Tensor:
        t = torch.as_tensor(t)
        check_time(t)
        return t.to(torch.float64)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
