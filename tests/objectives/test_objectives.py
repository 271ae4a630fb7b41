"""Losses: targets reduce to the seeds' formulas; weightings mean the same in every parameterization."""

import math

import pytest
import torch

from difflab.analysis import image_like_mixture
from difflab.objectives import (
    WEIGHTING_NAMES,
    DiffusionLoss,
    TimeSampler,
    gaussian_kl,
    prior_kl,
    vlb_bits_per_dim,
    vlb_term,
)
from difflab.param import NetworkDenoiser
from difflab.process import VPSDE, DiscreteVP, RectifiedFlow

f64 = torch.float64


class Recorder(torch.nn.Module):
    """A network that records what it saw and predicts a fixed tensor."""

    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward(self, x, c_noise, cond=None):
        self.x, self.c_noise = x, c_noise
        return self.out


def test_l_simple_of_seed_001():
    """eps-prediction, uniform discrete t, uniform weighting: ||eps - eps_theta(sqrt(abar) x0 + sqrt(1-abar) eps, t)||^2."""
    p = DiscreteVP()
    x0 = torch.randn(6, 1, 4, 4)
    pred = torch.randn(6, 1, 4, 4)
    model = NetworkDenoiser(Recorder(pred), p, "eps")
    loss = DiffusionLoss(TimeSampler("uniform"))(model, x0, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    i = torch.randint(1, 1001, (6,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    abar = p.alphas_cumprod[i - 1].float()[:, None, None, None]
    torch.testing.assert_close(model.net.x, abar.sqrt() * x0 + (1 - abar).sqrt() * eps)
    torch.testing.assert_close(model.net.c_noise, i.float())  # the network sees the DDPM step index
    torch.testing.assert_close(loss, (eps - pred).square().flatten(1).mean(1))


def test_rectified_flow_loss_of_seed_003():
    """t = sigmoid(randn), x_t = (1-t) x + t z, loss = ||(z - x) - v||^2."""
    p = RectifiedFlow()
    x0, v = torch.randn(5, 3), torch.randn(5, 3)
    model = NetworkDenoiser(Recorder(v), p, "velocity")
    loss = DiffusionLoss(TimeSampler("logit_normal"))(model, x0, generator=torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(9)
    t = torch.sigmoid(torch.randn(5, generator=g, dtype=f64)).float()
    z = torch.randn(x0.shape, generator=g)
    torch.testing.assert_close(model.net.x, (1 - t[:, None]) * x0 + t[:, None] * z)
    torch.testing.assert_close(loss, ((z - x0) - v).square().mean(1))


@pytest.mark.parametrize("weighting", [w for w in WEIGHTING_NAMES if w != "uniform"])
def test_weighting_is_independent_of_the_parameterization(weighting):
    """The same perturbation of x0_hat gives the same weighted loss whatever the network predicts."""
    mix = image_like_mixture(dim=16, k=3)
    x0 = mix.sample(32, torch.Generator().manual_seed(0))[0]
    losses = []
    for param in ("eps", "x0", "v", "velocity"):
        exact = mix.denoiser(VPSDE(), param)

        class Perturbed:
            process, parameterization = exact.process, exact.parameterization

            def __call__(self, x, t, cond=None, _e=exact, _p=param):
                k = _e.coefficients(x, t)
                x0_hat, eps_hat = _e.exact(x, t)
                x0_bad = x0_hat + 0.1  # the same x0-space error for every parameterization
                eps_bad = (x - k.alpha * x0_bad) / k.sigma
                return (k.c * x0_bad + k.d * eps_bad) if _p not in ("eps", "x0") else (
                    eps_bad if _p == "eps" else x0_bad)

        loss = DiffusionLoss(weighting=weighting)(Perturbed(), x0, generator=torch.Generator().manual_seed(1))
        losses.append(loss)
    for other in losses[1:]:
        torch.testing.assert_close(other, losses[0], rtol=1e-5, atol=1e-8)


def test_min_snr_and_snr_weights():
    p = VPSDE()
    t = torch.tensor([0.05, 0.5, 0.95], dtype=f64)
    from difflab.objectives.weighting import WEIGHTINGS

    torch.testing.assert_close(WEIGHTINGS["min_snr"](p, t, gamma=5.0), torch.clamp(p.snr(t), max=5.0))
    torch.testing.assert_close(WEIGHTINGS["likelihood"](p, t), p.beta(t) * p.alpha(t) ** 2 / p.sigma(t) ** 4)


def test_time_samplers():
    g = torch.Generator().manual_seed(0)
    t = TimeSampler("uniform")(10_000, DiscreteVP(T=50, beta_start=1e-3, beta_end=0.2), generator=g)
    assert set((t * 50).round().long().tolist()) == set(range(1, 51))
    t = TimeSampler("logit_normal", mean=0.5, std=0.7)(50_000, RectifiedFlow(), generator=g)
    logit = torch.log(t / (1 - t))
    assert abs(float(logit.mean()) - 0.5) < 0.02 and abs(float(logit.std()) - 0.7) < 0.02
    shifted = TimeSampler("uniform", shift=3.0)(50_000, RectifiedFlow(), generator=g)
    # P(t' <= 1/2) = P(t <= 1/4) for the shift t' = 3t / (1 + 2t)
    assert abs(float((shifted <= 0.5).double().mean()) - 0.25) < 0.01
    with pytest.raises(ValueError, match="time sampler"):
        TimeSampler("beta")


def test_gaussian_kl_closed_form():
    kl = gaussian_kl(torch.tensor([[1.0]], dtype=f64), torch.tensor([[2.0]], dtype=f64),
                     torch.tensor([[0.0]], dtype=f64), torch.tensor([[1.0]], dtype=f64))
    torch.testing.assert_close(kl, torch.tensor([0.5 * (-math.log(2) + 2 + 1 - 1)], dtype=f64))


def test_vlb_terms_vanish_for_the_exact_posterior():
    """With the exact denoiser of a point mass, x0_hat = x0, so each KL term reduces to the variance mismatch."""
    p = DiscreteVP(T=20, beta_start=1e-3, beta_end=0.3)
    from difflab.analysis import GaussianMixture

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
    from difflab.analysis import GaussianMixture

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


def test_vlb_bounds_the_entropy_of_quantized_data():
    """-log p(x0) <= bound, so E[bound] >= H(data) (the entropy of a 1-D quantized Gaussian, in bits)."""
    from difflab.analysis import GaussianMixture

    p = DiscreteVP(T=100, beta_start=1e-4, beta_end=0.1)
    var = 0.09
    mix = GaussianMixture(torch.ones(1), torch.zeros(1, 4, dtype=f64), torch.full((1,), var))
    x0 = mix.sample(400, torch.Generator().manual_seed(1))[0].clamp(-1, 1)
    x0 = torch.round((x0 + 1) * 127.5) / 127.5 - 1
    bpd = vlb_bits_per_dim(mix.denoiser(p, "eps"), x0, variance="posterior", generator=torch.Generator())
    entropy_bits = (0.5 * math.log(2 * math.pi * math.e * var) + math.log(127.5)) / math.log(2)
    assert float(bpd.mean()) > entropy_bits - 0.05
