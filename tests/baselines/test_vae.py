"""VAE: the discretized logistic is normalized, ELBO <= IWAE_k <= log p with IWAE_k -> log p on a
linear-Gaussian model whose log p(x) is known, the model's bounds and sampling, resume."""

from __future__ import annotations

import math

import pytest
import torch

from difflab.baselines.base import from_levels, to_levels
from difflab.baselines.bounds import elbo, gaussian_kl, iwae
from difflab.baselines.discretized import discretized_logistic_log_prob, discretized_logistic_sample
from difflab.baselines.vae import VAE
from difflab.utils.errors import DifflabError

from .helpers import assert_same_weights, level_data, train_and_resume

f64 = torch.float64


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_the_discretized_logistic_sums_to_one_over_the_levels(levels):
    """For locations inside, at and far outside [-1, 1] and scales from 1e-3 (below the floor) to 10, the
    L bin masses sum to 1 (float64), and every bin equals the CDF difference computed directly."""
    mu = torch.tensor([-3.0, -1.0, -0.3, 0.0, 0.41, 1.0, 2.5], dtype=f64)[:, None, None]
    log_s = torch.log(torch.tensor([1e-3, 0.05, 0.3, 1.0, 10.0], dtype=f64))[None, :, None]
    x = from_levels(torch.arange(levels), levels, f64)[None, None, :]
    logp = discretized_logistic_log_prob(x, mu, log_s, levels)  # (7, 5, L)
    assert torch.allclose(torch.logsumexp(logp, -1).exp(), torch.ones(7, 5, dtype=f64), atol=1e-12)
    half, s, m = 1 / (levels - 1), torch.tensor(0.3, dtype=f64), torch.tensor(0.1, dtype=f64)
    j = torch.arange(levels)
    xj = from_levels(j, levels, f64)
    upper = torch.where(j == levels - 1, 1.0, torch.sigmoid((xj + half - m) / s))  # the edge bins reach +-inf
    lower = torch.where(j == 0, 0.0, torch.sigmoid((xj - half - m) / s))
    assert torch.allclose(discretized_logistic_log_prob(xj, m, s.log(), levels).exp(), upper - lower, rtol=1e-10)


def test_discretized_logistic_draws_land_on_the_levels_with_the_bin_masses():
    g = torch.Generator().manual_seed(0)
    n, levels = 200_000, 5
    mu, log_s = torch.full((n,), 0.2, dtype=f64), torch.full((n,), math.log(0.4), dtype=f64)
    x = discretized_logistic_sample(mu, log_s, levels, g)
    freq = torch.bincount(to_levels(x, levels), minlength=levels).double() / n  # to_levels checks the levels
    p = discretized_logistic_log_prob(from_levels(torch.arange(levels), levels, f64), mu[:1], log_s[:1], levels).exp()
    assert ((freq - p).abs() <= 4.5 * (p * (1 - p) / n).sqrt()).all()


class LinearGaussian:
    """p(z) = N(0, I_2), p(x|z) = N(W z + b, s^2 I_3) with orthogonal columns of W, so the exact posterior
    is diagonal: Sigma = (I + W^T W / s^2)^-1, mu = Sigma W^T (x - b) / s^2; log p(x) = log N(x; b, W W^T + s^2 I)."""

    def __init__(self):
        q, _ = torch.linalg.qr(torch.tensor([[1.0, 0.2], [0.3, -1.0], [0.5, 0.4]], dtype=f64))
        self.W, self.b, self.s = q * torch.tensor([1.5, 0.7], dtype=f64), torch.tensor([0.1, -0.2, 0.3], dtype=f64), 0.5

    def log_px_given_z(self, x):
        return lambda z: torch.distributions.Normal(z @ self.W.T + self.b, self.s).log_prob(x).sum(-1)  # (S, B)

    def log_p(self, x):
        cov = self.W @ self.W.T + self.s**2 * torch.eye(3, dtype=f64)
        return torch.distributions.MultivariateNormal(self.b, cov).log_prob(x)

    def posterior(self, x):
        prec = torch.diagonal(torch.eye(2, dtype=f64) + self.W.T @ self.W / self.s**2)
        return (x - self.b) @ self.W / self.s**2 / prec, (-prec.log()).expand(x.shape[0], 2)

    def exact_elbo(self, x, mu, logvar):
        """E_q log N(x; Wz + b, s^2 I) - KL, in closed form."""
        resid = x - mu @ self.W.T - self.b
        trace = (logvar.exp() * self.W.square().sum(0)).sum(-1)  # tr(W diag(v) W^T)
        recon = -1.5 * math.log(2 * math.pi * self.s**2) - (resid.square().sum(-1) + trace) / (2 * self.s**2)
        return recon - gaussian_kl(mu, logvar)


def test_with_the_exact_posterior_every_bound_is_log_p():
    m, g = LinearGaussian(), torch.Generator().manual_seed(0)
    x = torch.tensor([[0.0, 0.0, 0.0], [1.0, -2.0, 0.5], [3.0, 1.0, -1.0]], dtype=f64)
    mu, logvar = m.posterior(x)
    assert torch.allclose(iwae(mu, logvar, m.log_px_given_z(x), 7, g), m.log_p(x), atol=1e-10, rtol=0)
    assert torch.allclose(m.exact_elbo(x, mu, logvar), m.log_p(x), atol=1e-10, rtol=0)


def test_elbo_below_iwae_below_log_p_and_iwae_converges():
    """A mismatched q (mean shifted, variance inflated): the Monte-Carlo ELBO matches its closed form
    (within 4 se), E[IWAE_k] grows with k (k = 1, 10, 100, 1000; 4 se), stays below log p (+3 se), and
    IWAE_1000 closes the gap to within 2% of ELBO's gap (two-sided at large k)."""
    m, g = LinearGaussian(), torch.Generator().manual_seed(1)
    R = 256  # independent repeats of one point: per-row estimates give the standard errors
    x = torch.tensor([[1.0, -2.0, 0.5]], dtype=f64).expand(R, 3)
    mu, logvar = m.posterior(x)
    mu, logvar = mu + torch.tensor([0.4, -0.3], dtype=f64), logvar + 0.7
    log_p, exact = m.log_p(x[:1]).item(), m.exact_elbo(x[:1], mu[:1], logvar[:1]).item()
    gap = log_p - exact
    assert gap > 0.2  # the mismatch is not negligible

    mc = elbo(mu, logvar, m.log_px_given_z(x), g, samples=16)
    assert abs(mc.mean().item() - exact) < 4 * mc.std().item() / math.sqrt(R)
    means, ses = [], []
    for k in (1, 10, 100, 1000):
        est = iwae(mu, logvar, m.log_px_given_z(x), k, g, chunk=R * 64)  # several chunks at k = 1000
        means.append(est.mean().item())
        ses.append(est.std().item() / math.sqrt(R))
        assert means[-1] < log_p + 3 * ses[-1]
    assert abs(means[0] - exact) < 4 * ses[0]  # IWAE_1 is an ELBO (with the sampled KL)
    for a, b, sa, sb in zip(means, means[1:], ses, ses[1:], strict=False):
        assert b > a - 4 * math.hypot(sa, sb)
    assert means[-1] > means[0] + 0.5 * gap
    assert abs(means[-1] - log_p) < 0.02 * gap + 3 * ses[-1]


def _vae(**kw):
    torch.manual_seed(0)
    return VAE((1, 4, 4), 5, latent_dim=3, width=4, **kw)


def test_the_models_bounds_order_and_its_loss_is_the_elbo():
    vae = _vae()
    x = level_data(8).x
    g = torch.Generator().manual_seed(0)
    e = torch.stack([vae.log_likelihood(x, generator=g) for _ in range(64)]).mean(0)  # (8,) ELBO, 64 draws
    w = vae.log_likelihood(x, generator=g, k=256)
    assert e.dtype == w.dtype == f64 and e.shape == (8,) and (w < 0).all()
    assert (w > e).all()  # at initialization q is far from the posterior: the bounds are clearly apart
    loss = torch.stack([vae(x, generator=g) for _ in range(64)]).mean(0)
    assert torch.allclose(loss.double(), -e / 16, rtol=0.05)


def test_sampling_and_bad_options():
    vae = _vae()
    a = vae.sample(6, generator=torch.Generator().manual_seed(3), device="cpu")
    assert torch.equal(a, vae.sample(6, generator=torch.Generator().manual_seed(3), device="cpu"))
    assert a.shape == (6, 1, 4, 4) and a.abs().max() <= 1
    draws = _vae(mean=False).sample(6, generator=torch.Generator().manual_seed(3), device="cpu")
    to_levels(draws, 5)  # on the levels
    binary = VAE((1, 4, 4), 2, latent_dim=2, width=2, decoder="bernoulli")
    assert binary.log_likelihood(from_levels(torch.randint(0, 2, (3, 1, 4, 4)), 2), k=4).shape == (3,)
    with pytest.raises(DifflabError, match="binary data only"):
        VAE((1, 4, 4), 17, decoder="bernoulli")
    with pytest.raises(DifflabError, match="must divide by 2"):
        VAE((1, 6, 6), 17, downsample=2)
    with pytest.raises(DifflabError, match="k >= 1"):
        vae.log_likelihood(level_data(2).x, k=0)


def test_the_objective_trains_and_resumes_bit_exactly(tmp_path):
    """-ELBO / D through the shared Trainer (reparameterization noise from the trainer's generator):
    stopped at step 2 and resumed, the run ends on the straight run's weights and losses."""
    straight, resumed, loss_a, loss_b = train_and_resume(tmp_path, "vae", level_data(), latent_dim=3, width=4)
    assert_same_weights(resumed.model, straight.model)
    assert_same_weights(resumed.ema.module, straight.ema.module)
    assert loss_a == loss_b and len(loss_a) == 4
