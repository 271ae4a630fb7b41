"""Exact conditionals of a Gaussian mixture: the oracles of inpainting and SDEdit (difflab.editing).

For x0 ~ sum_k w_k N(mu_k, diag(v_k)) every conditional below is again a Gaussian mixture in closed form:

* inpainting, p(x0 | x0[K] = y) with K the known coordinates: the components are diagonal, so given the
  component the unknown coordinates do not depend on y, and only the weights change (Bayes' rule):
      p(x0[U] | y) = sum_k r_k(y) N(mu_k[U], diag v_k[U]),   r_k(y) ∝ w_k N(y; mu_k[K], diag v_k[K]);
* SDEdit, p(x0 | x_s) for x_s = alpha x0 + sigma eps (Bayes' rule for a Gaussian prior and likelihood):
      p(x0 | x_s) = sum_k r_k(x_s) N(m_k, diag c_k),   r_k(x_s) = p(k | x_s) (GaussianMixture.responsibilities),
      m_k = mu_k + alpha v_k (x_s - alpha mu_k) / (alpha^2 v_k + sigma^2),  c_k = v_k sigma^2 / (alpha^2 v_k + sigma^2).

Both draw exact samples, one per row, in float64.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from difflab.analysis.gaussian_mixture import GaussianMixture
from difflab.process.base import NoiseProcess
from difflab.utils.errors import DifflabError


def _draw(log_r: Tensor, means: Tensor, variances: Tensor, generator) -> Tensor:
    """One draw per row from sum_k r_k N(means[b, k], variances[b, k]); log_r (B, K), means (B, K, D)."""
    comp = torch.multinomial(torch.softmax(log_r, dim=1), 1, generator=generator)[:, 0]  # (B,)
    rows = torch.arange(log_r.shape[0])
    z = torch.randn(means.shape[0], means.shape[2], generator=generator, dtype=torch.float64)
    return means[rows, comp] + variances[rows, comp].sqrt() * z


def inpainting_posterior_sample(mix: GaussianMixture, x: Tensor, known: Tensor, generator=None) -> Tensor:
    """Exact draws of x0 ~ p(x0 | x0[known] = x[known]), one per row of x (B, D); known: bool (D,) or (B, D)."""
    x = torch.as_tensor(x, dtype=torch.float64).reshape(x.shape[0], -1)
    known = torch.as_tensor(known, dtype=torch.bool).expand_as(x)
    if x.shape[1] != mix.dim:
        raise DifflabError(f"x has {x.shape[1]} features per row; the mixture has D = {mix.dim}")
    var = mix.variances[None]  # (1, K, D)
    if bool((var.expand(x.shape[0], -1, -1)[known[:, None, :].expand(-1, mix.num_components, -1)] <= 0).any()):
        raise DifflabError("the known coordinates need positive component variances")
    diff2 = (x[:, None, :] - mix.means[None]) ** 2  # (B, K, D)
    log_n = -0.5 * (diff2 / var + torch.log(2 * math.pi * var))
    log_r = torch.log(mix.weights)[None] + torch.where(known[:, None, :], log_n, torch.zeros_like(log_n)).sum(-1)
    B, K = log_r.shape
    draw = _draw(log_r, mix.means[None].expand(B, K, -1), var.expand(B, K, -1), generator)
    return torch.where(known, x, draw)


def sdedit_posterior_sample(mix: GaussianMixture, x_s: Tensor, s: float, process: NoiseProcess,
                            generator=None) -> Tensor:
    """Exact draws of x0 ~ p(x0 | x_s) at time s, one per row of x_s (B, D)."""
    x_s = torch.as_tensor(x_s, dtype=torch.float64).reshape(x_s.shape[0], -1)
    t = torch.full((x_s.shape[0],), float(s), dtype=torch.float64)
    log_r = torch.log(mix.responsibilities(x_s, t, process).clamp(min=1e-300))  # (B, K)
    a, s2 = process.alpha(t)[:, None, None], process.sigma(t)[:, None, None] ** 2
    v, mu = mix.variances[None], mix.means[None]
    denom = a**2 * v + s2
    means = mu + a * v * (x_s[:, None, :] - a * mu) / denom
    return _draw(log_r, means, v * s2 / denom, generator)
