"""The DDPM variational bound (Ho et al. 2020 eq. 5; seed 004) against closed forms and from both sides."""

import math

import torch

from difflab.analysis import GaussianMixture
from difflab.objectives import discretized_gaussian_nll, gaussian_kl, prior_kl, vlb_bits_per_dim, vlb_term
from difflab.process import DiscreteVP

f64 = torch.float64


def test_gaussian_kl_closed_form():
    kl = gaussian_kl(torch.tensor([[1.0]], dtype=f64), torch.tensor([[2.0]], dtype=f64),
                     torch.tensor([[0.0]], dtype=f64), torch.tensor([[1.0]], dtype=f64))
    torch.testing.assert_close(kl, torch.tensor([0.5 * (-math.log(2) + 2 + 1 - 1)], dtype=f64))


def test_vlb_terms_vanish_for_the_exact_posterior():
    """With the exact denoiser of a point mass, x0_hat = x0, so each KL term reduces to the variance mismatch."""
    p = DiscreteVP(T=20, beta_start=1e-3, beta_end=0.3)
    point = torch.tensor([[0.2, -0.4]], dtype=f64)
    mix = GaussianMixture(torch.ones(1), point, torch.zeros(1))
    d = mix.denoiser(p, "eps")
    x0 = point.expand(4, 2).clone()
    noise = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=f64)
    kl_post = vlb_term(d, x0, 7, noise, variance="posterior")
    torch.testing.assert_close(kl_post, torch.zeros(4, dtype=f64), atol=1e-9, rtol=0)
    kl_beta = vlb_term(d, x0, 7, noise, variance="beta")
    _, var_q = p.posterior(x0, x0, torch.tensor([7] * 4))
    beta = p.betas[6]
    expected = 2 * 0.5 * (torch.log(beta / var_q) + var_q / beta - 1)
    torch.testing.assert_close(kl_beta, expected.reshape(-1).expand(4), rtol=1e-9, atol=1e-12)
    assert float(prior_kl(x0, p).min()) > 0


def test_vlb_kl_term_matches_monte_carlo():
    """L_{i-1} = E_q[log q(x_{i-1} | x_i, x0) - log p(x_{i-1} | x_i)], estimated by sampling x_{i-1}."""
    p = DiscreteVP(T=20, beta_start=1e-3, beta_end=0.3)
    mix = GaussianMixture(torch.ones(2), torch.tensor([[0.5, 0.0], [-0.5, 0.2]], dtype=f64), torch.full((2,), 0.04))
    d = mix.denoiser(p, "eps")
    x0 = torch.tensor([[0.3, -0.1]], dtype=f64)
    noise = torch.tensor([[0.4, -1.1]], dtype=f64)
    i = 9
    kl = vlb_term(d, x0, i, noise, variance="beta")
    t = torch.tensor([i / 20], dtype=f64)
    x_t = p.sample_xt(x0, t, noise)
    mean_q, var_q = p.posterior(x0, x_t, torch.tensor([i]))
    mean_p, _ = p.posterior(d.predict(x_t, t).x0, x_t, torch.tensor([i]))
    var_p = p.betas[i - 1]
    g = torch.Generator().manual_seed(0)
    z = mean_q + var_q.sqrt() * torch.randn(400_000, 2, generator=g, dtype=f64)
    log_q = -0.5 * ((z - mean_q) ** 2 / var_q + torch.log(2 * math.pi * var_q)).sum(1)
    log_p = -0.5 * ((z - mean_p) ** 2 / var_p + torch.log(2 * math.pi * var_p)).sum(1)
    mc = (log_q - log_p).mean()
    assert abs(float(kl) - float(mc)) < 4 * float((log_q - log_p).std()) / math.sqrt(400_000)


def quantize(x):
    return torch.round((x.clamp(-1, 1) + 1) * 127.5) / 127.5 - 1


def expected_bound_bits(p: DiscreteVP, var: float, n_mc: int = 400_000) -> float:
    """E_x0[bound] per dimension for x0 ~ N(0, var), the exact denoiser and the beta decoder variance,
    written from the Gaussian closed forms (independently of difflab.objectives.vlb):

        E L_T     = 1/2 (-log(1 - abar_T) + (1 - abar_T) + abar_T var - 1),
        E L_{i-1} = 1/2 (log(beta_i / v_i) + (v_i + a_i^2 V_i) / beta_i - 1),
            a_i = sqrt(abar_{i-1}) beta_i / (1 - abar_i)  (the x0 coefficient of the posterior mean),
            v_i = (1 - abar_{i-1}) beta_i / (1 - abar_i), V_i = var (1 - abar_i) / (abar_i var + 1 - abar_i)
            (the variance of x0 given x_i, the mean square of x0 - x0_hat),
        E L_0     by Monte Carlo over (x0, x_1) with the decoder N(E[x0 | x_1], beta_1) on the 8-bit bin.
    """
    abar, beta = p.alphas_cumprod, p.betas
    l_T = 0.5 * (-math.log(1 - abar[-1]) + (1 - abar[-1]) + abar[-1] * var - 1)
    ab, ab_prev, b = abar[1:], abar[:-1], beta[1:]
    a = ab_prev.sqrt() * b / (1 - ab)
    v = (1 - ab_prev) * b / (1 - ab)
    V = var * (1 - ab) / (ab * var + 1 - ab)
    l_mid = 0.5 * (torch.log(b / v) + (v + a**2 * V) / b - 1)
    g = torch.Generator().manual_seed(3)
    z = quantize(math.sqrt(var) * torch.randn(n_mc, 1, generator=g, dtype=f64))
    x1 = abar[0].sqrt() * z + (1 - abar[0]).sqrt() * torch.randn(n_mc, 1, generator=g, dtype=f64)
    x0_hat = abar[0].sqrt() * var / (abar[0] * var + 1 - abar[0]) * x1
    l_0 = discretized_gaussian_nll(z, x0_hat, beta[0].expand(n_mc, 1)).mean()
    return float((l_T + l_mid.sum() + l_0) / math.log(2))


def test_vlb_with_beta_variance_is_tight_from_both_sides():
    """Gaussian data with its exact denoiser: H(data) <= E[bound] = the closed-form sum of KLs, and the
    bound with the beta (upper) variance exceeds the entropy by less than 0.15 bits/dim (0.084 here). An
    inflating or a deflating bug of more than ~0.045 bits/dim fails (4 standard errors, 0.01 each)."""
    p = DiscreteVP(T=50, beta_start=1e-4, beta_end=0.2)
    var, D = 0.09, 16
    mix = GaussianMixture(torch.ones(1), torch.zeros(1, D, dtype=f64), torch.full((1,), var))
    x0 = quantize(mix.sample(2000, torch.Generator().manual_seed(0))[0])
    bpd = vlb_bits_per_dim(mix.denoiser(p, "eps"), x0, variance="beta", generator=torch.Generator().manual_seed(10))
    # -log2 p_data(x0) per dim of the same samples: the bound minus it has mean >= 0 (and less spread)
    nll = discretized_gaussian_nll(x0, torch.zeros_like(x0), torch.full_like(x0, var)) / (D * math.log(2))
    gap = bpd - nll
    se_gap = float(gap.std()) / math.sqrt(len(gap))
    assert float(gap.mean()) > -4 * se_gap
    expected = expected_bound_bits(p, var)
    se = float(bpd.std()) / math.sqrt(len(bpd))
    assert abs(float(bpd.mean()) - expected) < 4 * se + 0.005
    entropy_bits = float(discretized_gaussian_nll(quantize(math.sqrt(var) * torch.randn(
        400_000, 1, generator=torch.Generator().manual_seed(4), dtype=f64)), torch.zeros(400_000, 1, dtype=f64),
        torch.full((400_000, 1), var, dtype=f64)).mean()) / math.log(2)
    assert 0 < expected - entropy_bits < 0.15
    assert float(gap.mean()) < expected - entropy_bits + 4 * se_gap


def test_vlb_with_posterior_variance_is_loose_for_narrow_data():
    """The posterior (lower) variance underestimates the true reverse variance var_q + a^2 V of narrow
    data, so its bound is far above the entropy (both are valid bounds; beta is the tight one here)."""
    p = DiscreteVP(T=50, beta_start=1e-4, beta_end=0.2)
    mix = GaussianMixture(torch.ones(1), torch.zeros(1, 4, dtype=f64), torch.full((1,), 0.09))
    x0 = quantize(mix.sample(64, torch.Generator().manual_seed(1))[0])
    d = mix.denoiser(p, "eps")
    beta = vlb_bits_per_dim(d, x0, variance="beta", generator=torch.Generator().manual_seed(2)).mean()
    post = vlb_bits_per_dim(d, x0, variance="posterior", generator=torch.Generator().manual_seed(2)).mean()
    assert float(post) > float(beta) + 5


def test_the_bound_of_a_continuous_process_is_one_message_naming_the_alternatives():
    """vlb_bits_per_dim on a VP-SDE denoiser raised an AttributeError in prior_kl before its own check."""
    import pytest

    from difflab.process import VPSDE
    from difflab.utils.errors import DifflabError

    f64 = torch.float64
    mixture = GaussianMixture(torch.ones(1, dtype=f64), torch.zeros(1, 2, dtype=f64), torch.full((1, 2), 0.1, dtype=f64))
    d = mixture.denoiser(VPSDE(), "eps")
    with pytest.raises(DifflabError, match="needs a discrete process.*continuous_elbo"):
        vlb_bits_per_dim(d, torch.zeros(3, 2, dtype=torch.float64))
