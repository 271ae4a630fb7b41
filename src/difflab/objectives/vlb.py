"""The exact DDPM variational bound for the discrete chain (Ho et al. 2020 eq. 5; seed 004).

    -log p(x0) <= L_T + sum_{i=2}^{T} L_{i-1} + L_0,
    L_T     = KL(q(x_T | x0) || N(0, I)),
    L_{i-1} = KL(q(x_{i-1} | x_i, x0) || p_theta(x_{i-1} | x_i)),        i = 2..T,
    L_0     = -log p_theta(x0 | x_1)   (discretized Gaussian decoder, Ho et al. eq. 13).

p_theta(x_{i-1} | x_i) = N(mu_theta, s_i^2 I) with mu_theta the posterior mean evaluated at the
network's x0_hat and s_i^2 either beta_i or the posterior variance (both in Ho et al. sec. 3.2). All
terms are per sample, in nats, summed over dimensions; divide by D ln 2 for bits per dimension.
Data are L-level values scaled to [-1, 1] (bin width 2/(L-1)): 8-bit by default (L = 256), `levels`
for others (digits: 17).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from difflab.process.discrete import DiscreteVP
from difflab.utils.errors import DifflabError, check_choice

DECODER_VARIANCES = ("beta", "posterior")


def gaussian_kl(mean_q: Tensor, var_q: Tensor, mean_p: Tensor, var_p: Tensor) -> Tensor:
    """KL(N(mean_q, var_q) || N(mean_p, var_p)) per sample, summed over all but the first dim."""
    kl = 0.5 * (torch.log(var_p / var_q) + (var_q + (mean_q - mean_p) ** 2) / var_p - 1)
    return kl.flatten(1).sum(1)


def _discrete(denoiser) -> DiscreteVP:
    if not isinstance(denoiser.process, DiscreteVP):
        raise DifflabError("the DDPM variational bound needs a discrete process (process 'ddpm'); for a continuous "
                           "one use difflab.likelihood.continuous_elbo or ode_log_likelihood")
    return denoiser.process


def prior_kl(x0: Tensor, process: DiscreteVP) -> Tensor:
    """L_T = KL(N(sqrt(abar_T) x0, (1 - abar_T) I) || N(0, I)) per sample."""
    abar = process.alphas_cumprod[-1].to(x0.device)
    mean = abar.sqrt() * x0.double()
    var = (1 - abar).expand_as(mean)
    return gaussian_kl(mean, var, torch.zeros_like(mean), torch.ones_like(mean))


def _std_normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))


def discretized_gaussian_nll(x0: Tensor, mean: Tensor, var: Tensor, levels: int = 256) -> Tensor:
    """-log of the probability mass of N(mean, var) on the bin of x0 among `levels` levels of [-1, 1] (half
    width 1/(levels-1); edges at +-1 open, so the masses of the L bins sum to 1), summed."""
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise DifflabError(f"levels must be an integer >= 2 (8-bit: 256, digits: 17); got {levels!r}")
    x0, mean = x0.double(), mean.double()
    std = var.double().sqrt()
    half = 1.0 / (levels - 1)
    upper = torch.where(x0 > 1 - 1e-3, torch.ones_like(x0), _std_normal_cdf((x0 + half - mean) / std))
    lower = torch.where(x0 < -1 + 1e-3, torch.zeros_like(x0), _std_normal_cdf((x0 - half - mean) / std))
    return -torch.log(torch.clamp(upper - lower, min=1e-12)).flatten(1).sum(1)


def vlb_term(
    denoiser, x0: Tensor, i: int, noise: Tensor, cond=None, variance: str = "beta", levels: int = 256
) -> Tensor:
    """The bound's term at step i (per sample): L_{i-1} for i >= 2, L_0 for i = 1, with x_i drawn from
    q(x_i | x0) using `noise`."""
    process = _discrete(denoiser)
    check_choice("decoder variance", variance, DECODER_VARIANCES)
    if not 1 <= i <= process.T:
        raise DifflabError(f"step i must lie in 1..{process.T}; got {i}")
    B = x0.shape[0]
    t = torch.full((B,), i / process.T, dtype=torch.float64, device=x0.device)
    x_t = process.sample_xt(x0, t, noise)
    x0_hat = denoiser.predict(x_t, t.to(x0.dtype), cond).x0
    idx = torch.full((B,), i, dtype=torch.long, device=x0.device)
    mean_p, post_var = process.posterior(x0_hat.double(), x_t.double(), idx)
    beta = process.betas[i - 1].to(x0.device)
    var_p = beta if (variance == "beta" or i == 1) else post_var
    var_p = torch.as_tensor(var_p, dtype=torch.float64, device=x0.device).expand_as(mean_p)
    if i == 1:
        return discretized_gaussian_nll(x0, mean_p, var_p, levels)
    mean_q, var_q = process.posterior(x0.double(), x_t.double(), idx)
    return gaussian_kl(mean_q, var_q.expand_as(mean_q), mean_p, var_p)


@torch.no_grad()
def vlb_bits_per_dim(denoiser, x0: Tensor, cond=None, variance: str = "beta", generator=None,
                     levels: int = 256) -> Tensor:
    """The full bound in bits per dimension per sample (data on `levels` levels): T network evaluations."""
    process = _discrete(denoiser)
    total = prior_kl(x0, process)
    for i in range(1, process.T + 1):
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        total = total + vlb_term(denoiser, x0, i, noise, cond, variance, levels)
    return total / (x0[0].numel() * math.log(2))
