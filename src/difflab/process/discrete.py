"""Discrete DDPM (variance preserving): T steps with a beta schedule (Ho et al. 2020; seeds 000, 001, 004).

Step i = 1..T sits at t = i / T. The chain is x_i = sqrt(1 - beta_i) x_{i-1} + sqrt(beta_i) eps, whose
closed form is x_i = sqrt(alphabar_i) x0 + sqrt(1 - alphabar_i) eps with alphabar_i = prod_{j<=i}(1 - beta_j).

Between grid points the process is defined by linear interpolation of the log-SNR lambda_i at t_i = i/T
(so any continuous-time solver can run on it); on [0, 1/T] sigma^2 grows linearly from 0 to
sigma_1^2 = beta_1, giving alpha(0) = 1, sigma(0) = 0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from difflab.process.base import NoiseProcess
from difflab.utils.errors import DifflabError

BETA_SCHEDULES = ("linear", "cosine")


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """Ho et al. 2020: beta linear from beta_start = 1e-4 to beta_end = 0.02 over T (= 1000) steps."""
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Nichol & Dhariwal 2021: alphabar(t) = f(t)/f(0), f(t) = cos^2(((t + s)/(1 + s)) pi/2); beta <= 0.999."""
    t = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    return torch.clamp(1 - abar[1:] / abar[:-1], max=max_beta)


class DiscreteVP(NoiseProcess):
    """DDPM's discrete variance-preserving chain with T steps."""

    name = "ddpm"
    is_discrete = True

    def __init__(
        self,
        T: int = 1000,
        schedule: str = "linear",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        betas: Tensor | None = None,
    ):
        if betas is None:
            if not isinstance(T, int) or T < 1:
                raise DifflabError(f"T (number of diffusion steps) must be an integer >= 1; got {T!r}")
            if schedule == "linear":
                betas = linear_betas(T, beta_start, beta_end)
            elif schedule == "cosine":
                betas = cosine_betas(T)
            else:
                raise DifflabError(f"unknown beta schedule {schedule!r}; valid: {', '.join(BETA_SCHEDULES)}")
        betas = torch.as_tensor(betas, dtype=torch.float64).flatten()
        if betas.numel() < 1:
            raise DifflabError("betas must hold at least one value (T >= 1)")
        bad = betas[(betas <= 0) | (betas >= 1)]
        if bad.numel():
            raise DifflabError(f"every beta must lie in (0, 1); got {float(bad[0])!r}")
        self.schedule = schedule
        self.T = betas.numel()
        self.betas = betas  # beta_i, i = 1..T at index i - 1
        self.alphas_cumprod = torch.cumprod(1 - betas, 0)  # alphabar_i
        abar = self.alphas_cumprod
        self._lam = 0.5 * (torch.log(abar) - torch.log1p(-abar))  # lambda_i, decreasing
        self._grid = torch.arange(1, self.T + 1, dtype=torch.float64) / self.T
        self.t_min = 1.0 / self.T

    # ---- the table, read at integer steps --------------------------------------------------------
    def alphabar(self, i: Tensor) -> Tensor:
        """alphabar_i for integer steps i in 0..T (alphabar_0 = 1)."""
        i = torch.as_tensor(i, dtype=torch.long)
        if i.numel() and (int(i.min()) < 0 or int(i.max()) > self.T):
            raise DifflabError(f"step index must lie in 0..{self.T}; got {int(i.min())}..{int(i.max())}")
        table = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod]).to(i.device)
        return table[i]

    def chain_step(self, x_prev: Tensor, i: int, noise: Tensor) -> Tensor:
        """One forward step x_i = sqrt(1 - beta_i) x_{i-1} + sqrt(beta_i) eps (seeds 000, 004)."""
        if not 1 <= i <= self.T:
            raise DifflabError(f"step index must lie in 1..{self.T}; got {i}")
        b = float(self.betas[i - 1])
        return math.sqrt(1 - b) * x_prev + math.sqrt(b) * noise

    def posterior(self, x0: Tensor, x_t: Tensor, i: Tensor) -> tuple[Tensor, Tensor]:
        """q(x_{i-1} | x_i, x0) of seed 004 (Ho et al. eq. 6-7) for integer steps i >= 1: (mean, var) with

        mean = sqrt(abar_{i-1}) beta_i / (1 - abar_i) x0 + sqrt(1 - beta_i) (1 - abar_{i-1}) / (1 - abar_i) x_i,
        var  = (1 - abar_{i-1}) / (1 - abar_i) beta_i,
        which is `posterior_coefficients` between the grid times s = (i - 1) / T and t = i / T.
        """
        i = torch.as_tensor(i, dtype=torch.long, device=x0.device)
        if i.numel() and (int(i.min()) < 1 or int(i.max()) > self.T):
            raise DifflabError(f"step index must lie in 1..{self.T}; got {int(i.min())}..{int(i.max())}")
        s, t = (i - 1).to(torch.float64) / self.T, i.to(torch.float64) / self.T
        shape = (-1,) + (1,) * (x0.ndim - 1) if i.ndim else ()
        c_xt, c_x0, var = (v.reshape(shape) for v in self.posterior_coefficients(s, t))
        return (c_x0 * x0 + c_xt * x_t).to(x0.dtype), var

    # ---- continuous-time view through log-SNR interpolation ---------------------------------------
    def _segments(self, t: Tensor):
        """For each t >= 1/T: index k of the left grid point and the local slope of lambda."""
        pos = torch.clamp(t * self.T - 1, 0, self.T - 1)  # fractional index into lambda_1..lambda_T
        k = torch.clamp(pos.floor().long(), max=max(self.T - 2, 0))
        lam = self._lam.to(t.device)
        if self.T == 1:
            return lam[0].expand_as(t), torch.zeros_like(t)
        slope = (lam[k + 1] - lam[k]) * self.T
        return lam[k] + (pos - k) * (lam[k + 1] - lam[k]), slope

    def _sigma2_first(self, t: Tensor) -> Tensor:
        return t * self.T * (1 - self.alphas_cumprod[0])  # sigma^2 linear on [0, 1/T]

    def log_snr(self, t):
        t = self._t(t)
        lam, _ = self._segments(t)
        s2 = self._sigma2_first(t)
        lam_first = 0.5 * (torch.log1p(-s2) - torch.log(s2))
        return torch.where(t * self.T < 1, lam_first, lam)

    def alpha(self, t):
        return torch.sqrt(torch.sigmoid(2 * self.log_snr(t)))

    def sigma(self, t):
        return torch.sqrt(torch.sigmoid(-2 * self.log_snr(t)))

    def _dlam(self, t: Tensor) -> Tensor:
        _, slope = self._segments(t)
        s2 = self._sigma2_first(t)
        ds2 = self.T * (1 - self.alphas_cumprod[0])
        first = -0.5 * ds2 * (1 / (1 - s2) + 1 / s2)
        return torch.where(t * self.T < 1, first, slope)

    def d_alpha(self, t):
        t = self._t(t)
        a, s = self.alpha(t), self.sigma(t)
        return a * s**2 * self._dlam(t)  # alpha^2 = sigmoid(2 lambda)

    def d_sigma(self, t):
        t = self._t(t)
        a, s = self.alpha(t), self.sigma(t)
        return -s * a**2 * self._dlam(t)

    def t_from_log_snr(self, lam):
        lam = torch.as_tensor(lam, dtype=torch.float64)
        table = self._lam.to(lam.device)
        # position among the decreasing lambda_i: searchsorted on the increasing -lambda
        j = torch.searchsorted(-table, -lam).clamp(1, max(self.T - 1, 1))
        k = j - 1
        if self.T > 1:
            frac = (lam - table[k]) / (table[k + 1] - table[k])
            t_inner = (k + 1 + frac) / self.T
        else:
            t_inner = torch.ones_like(lam)
        s2 = torch.sigmoid(-2 * lam)
        t_first = s2 / (self.T * (1 - self.alphas_cumprod[0]))
        return torch.where(lam > table[0], t_first, t_inner)

    def __repr__(self):
        return f"DiscreteVP(T={self.T}, schedule={self.schedule!r})"
