"""Variational bounds in bits/dim: the continuous-time ELBO (Kingma et al. 2021, VDM) and the discrete DDPM
bound of difflab.objectives.vlb (Ho et al. 2020; seed 004), behind one interface (LikelihoodResult).

Continuous-time ELBO on [t0, 1] (VDM eq. 9-10 and 17, written for any process x_t = alpha x + sigma eps):

    -log p(x) <= L_prior + L_recon + L_diffusion,
    L_prior     = KL(q(x_1 | x) || N(0, s_p^2 I)),  s_p = sigma(1)            (closed form),
    L_recon     = E[-log N(x; x0_hat(x_t0, t0), (sigma_t0 / alpha_t0)^2 I)]   (Gaussian decoder at t0),
    L_diffusion = -1/2 int_t0^1 SNR'(t) ||x - x0_hat(x_t, t)||^2 dt
                = int_{lambda(1)}^{lambda(t0)} ||eps - eps_hat(x_lambda)||^2 dlambda,

the last line because SNR = e^(2 lambda) (lambda = log(alpha / sigma), difflab's log-SNR), so
SNR' dt = 2 e^(2 lambda) dlambda, and alpha (x - x0_hat) = sigma (eps_hat - eps). The integral is
estimated by importance sampling the time: `t_density="log_snr"` draws lambda uniformly on
[lambda(1), lambda(t0)] (density proportional to |lambda'(t)|, which cancels the SNR' weight: VDM sec. 5's
variance argument), `"uniform"` draws t ~ U[t0, 1] with weight (1 - t0) |lambda'(t)|. Each of `samples`
draws (t, eps) per data point gives one unbiased estimate of the bound. By default the n draws are
stratified (VDM's low-discrepancy sampler in its stratified form): u_j = (j + U_j) / n, j = 0..n-1; the mean
stays unbiased, and its standard error is estimated by merging adjacent strata into pairs,
se^2 = sum_p (f_2p - f_2p+1)^2 / n^2 (the unbiased variance of the 2-per-stratum design, conservative for
the finer one). With stratified=False the draws are i.i.d. and se = std / sqrt(n). With `levels` the data
are uniformly dequantized first.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from difflab.likelihood.ode import network_placement
from difflab.likelihood.result import LikelihoodResult, check_levels, dequantize, make_result
from difflab.objectives.vlb import gaussian_kl, vlb_bits_per_dim
from difflab.process.discrete import DiscreteVP
from difflab.utils.cond import cond_index, cond_to
from difflab.utils.errors import DifflabError, check_choice

T_DENSITIES = ("log_snr", "uniform")
f64 = torch.float64


def _check_samples(samples) -> None:
    if not isinstance(samples, int) or samples < 1:
        raise DifflabError(f"samples must be an integer >= 1 (Monte-Carlo draws per data point); got {samples!r}")


def _mean_and_stderr(draws: Tensor) -> tuple[Tensor, Tensor]:
    """Mean over the last dim and its standard error (nan with one draw)."""
    n = draws.shape[-1]
    stderr = draws.std(-1) / math.sqrt(n) if n > 1 else torch.full(draws.shape[:-1], math.nan, dtype=f64)
    return draws.mean(-1), stderr


@torch.no_grad()
def continuous_elbo(
    denoiser,
    x: Tensor,
    *,
    cond=None,
    samples: int = 16,
    t_density: str = "log_snr",
    stratified: bool = True,
    t_start: float | None = None,
    t_end: float = 1.0,
    levels: int | None = None,
    generator: torch.Generator | None = None,
) -> LikelihoodResult:
    """The continuous-time ELBO (module docstring) per sample: an upper bound on -log p(x), nats and bits/dim.

    t_end < 1 ends the chain at t_end with the prior N(0, s_p^2) there (the model that starts from noise at
    t_end): for a process whose log-SNR is -inf at t = 1 (rectified flow), e.g. t_end = 1 - 1e-3."""
    check_choice("time density", t_density, T_DENSITIES)
    _check_samples(samples)
    if stratified and samples % 2:
        raise DifflabError(
            f"stratified samples must be even (strata are paired for the error); got {samples}: "
            "pass an even number or stratified=False"
        )
    process = denoiser.process
    t0 = process.t_min if t_start is None else float(t_start)
    if not 0 < t0 < 1:
        raise DifflabError(f"t_start must lie in (0, 1) (sigma(t0) > 0 for the decoder); got {t_start!r}")
    if not t0 < t_end <= 1:
        raise DifflabError(f"t_end must lie in (t_start, 1]; got {t_end!r}")
    x = dequantize(x.detach().cpu(), levels, generator) if levels is not None else x.detach().to("cpu", f64)
    B, D = x.shape[0], x[0].numel()
    t_0, t_1 = torch.tensor(t0, dtype=f64), torch.tensor(float(t_end), dtype=f64)

    # L_prior: KL(N(alpha_1 x, sigma_1^2) || N(0, s_p^2)), closed form
    a1, s1, sp = process.alpha(t_1), process.sigma(t_1), process.prior_std()
    prior = gaussian_kl(a1 * x, (s1**2).expand_as(x), torch.zeros_like(x), torch.full_like(x, sp**2))

    lam_lo, lam_hi = float(process.log_snr(t_1)), float(process.log_snr(t_0))
    if not (math.isfinite(lam_lo) and math.isfinite(lam_hi)):
        raise DifflabError("the continuous ELBO needs a finite log-SNR on [t_start, t_end]; raise t_start, lower t_end "
                           "below 1 (rectified flow) or use a VP/VE process")
    xs = x.repeat_interleave(samples, 0)  # (B n, ...)
    n_all = xs.shape[0]
    eps = torch.randn(xs.shape, generator=generator, dtype=f64)
    u = torch.rand(n_all, generator=generator, dtype=f64)
    if stratified:  # one draw per stratum [j / n, (j + 1) / n) of each data point's n draws
        u = (torch.arange(samples, dtype=f64).repeat(B) + u) / samples
    if t_density == "log_snr":
        lam = lam_lo + (lam_hi - lam_lo) * u
        t = process.t_from_log_snr(lam).clamp(t0, float(t_end))
        weight = torch.full((n_all,), lam_hi - lam_lo, dtype=f64)
    else:
        t = t0 + (t_end - t0) * u
        dlam = process.d_alpha(t) / process.alpha(t) - process.d_sigma(t) / process.sigma(t)
        weight = (t_end - t0) * dlam.abs()
    device, dtype = network_placement(denoiser)
    cond_n = cond_to(cond_index(cond, torch.arange(B).repeat_interleave(samples)), device)  # rows of xs

    def predict(x_t: Tensor, t: Tensor):  # a network in its own dtype and device, the bound in float64
        pred = denoiser.predict(x_t.to(device, dtype), t.to(device), cond_n)
        return pred.x0.to("cpu", f64), pred.eps.to("cpu", f64)

    x_t = process.sample_xt(xs, t, eps)
    eps_hat = predict(x_t, t)[1]
    diffusion = weight * ((eps - eps_hat) ** 2).flatten(1).sum(1)

    # L_recon: Gaussian decoder N(x0_hat(x_t0), (sigma_t0 / alpha_t0)^2) at t0, fresh noise
    eps0 = torch.randn(xs.shape, generator=generator, dtype=f64)
    t0_b = t_0.expand(n_all)
    x0_hat = predict(process.sample_xt(xs, t0_b, eps0), t0_b)[0]
    var0 = float(process.sigma(t_0) / process.alpha(t_0)) ** 2
    recon = 0.5 * (((xs - x0_hat) ** 2).flatten(1).sum(1) / var0 + D * math.log(2 * math.pi * var0))

    draws = (diffusion + recon).reshape(B, samples)
    if stratified:
        mean = draws.mean(1)
        stderr = (draws[:, 0::2] - draws[:, 1::2]).pow(2).sum(1).sqrt() / samples
    else:
        mean, stderr = _mean_and_stderr(draws)
    return make_result(prior + mean, stderr, D, levels, 2)


def discrete_vlb(
    denoiser,
    x: Tensor,
    *,
    cond=None,
    samples: int = 1,
    variance: str = "beta",
    levels: int = 256,
    generator: torch.Generator | None = None,
) -> LikelihoodResult:
    """The discrete DDPM bound L_T + sum L_{i-1} + L_0 of difflab.objectives.vlb, `samples` times, as a
    LikelihoodResult. Its discretized decoder L_0 puts mass on the data's `levels` bins (bin width
    2/(levels-1); 8-bit: 256, digits: 17); the data are checked to lie on those levels."""
    _check_samples(samples)
    if levels is None:
        raise DifflabError("the discrete DDPM bound's decoder L_0 needs data on discrete levels (levels=None given): "
                           "use continuous_elbo or ode_log_likelihood for continuous data")
    if not isinstance(denoiser.process, DiscreteVP):
        raise DifflabError("the DDPM variational bound needs a discrete process (process 'ddpm'); use continuous_elbo")
    check_levels(x, levels)
    D = x[0].numel()
    bpd = torch.stack(
        [vlb_bits_per_dim(denoiser, x, cond, variance, generator, levels).double() for _ in range(samples)], -1
    )
    mean, stderr = _mean_and_stderr(bpd * D * math.log(2))
    return make_result(mean, stderr, D, None, samples * denoiser.process.T)
