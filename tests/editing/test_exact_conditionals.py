"""The closed-form conditionals of difflab.analysis.conditional against independent computations."""

import torch

from difflab.analysis import GaussianMixture
from difflab.analysis.conditional import inpainting_posterior_sample, sdedit_posterior_sample
from difflab.process import VPSDE

f64 = torch.float64


def test_inpainting_conditional_matches_rejection_sampling():
    """p(x2 | x1 = y1) of a 2-D mixture by keeping prior draws with |x1 - y1| < 0.02 (Bayes by counting)."""
    mix = GaussianMixture(torch.tensor([0.3, 0.7]), torch.tensor([[-1.0, 0.5], [0.4, -1.0]], dtype=f64),
                          torch.tensor([[0.25, 0.04], [0.16, 0.09]], dtype=f64))
    y = torch.tensor([[-0.3, 0.0]], dtype=f64)
    exact = inpainting_posterior_sample(mix, y.expand(20000, 2), torch.tensor([True, False]),
                                        torch.Generator().manual_seed(0))
    assert bool((exact[:, 0] == -0.3).all())
    prior = mix.sample(2_000_000, torch.Generator().manual_seed(1))[0]
    kept = prior[(prior[:, 0] - y[0, 0]).abs() < 0.02, 1]
    for q in (0.1, 0.5, 0.9):  # quantiles agree to the Monte Carlo error of ~20k kept draws
        assert abs(float(exact[:, 1].quantile(q)) - float(kept.quantile(q))) < 0.03
    assert abs(float((exact[:, 1] > -0.3).double().mean()) - float((kept > -0.3).double().mean())) < 0.015


def test_sdedit_posterior_has_the_exact_posterior_mean_and_tweedie_variance():
    """The draws' mean is E[x0 | x_s] (GaussianMixture.posterior_mean) and, for one Gaussian, their
    variance is v sigma^2 / (alpha^2 v + sigma^2)."""
    p = VPSDE()
    mix = GaussianMixture(torch.tensor([0.5, 0.5]), torch.tensor([[-1.0, 0.0], [1.0, 0.5]], dtype=f64),
                          torch.full((2,), 0.1))
    x_s = torch.tensor([[0.2, 0.1]], dtype=f64)
    draws = sdedit_posterior_sample(mix, x_s.expand(200_000, 2), 0.4, p, torch.Generator().manual_seed(0))
    mean = mix.posterior_mean(x_s, torch.tensor([0.4], dtype=f64), p)
    torch.testing.assert_close(draws.mean(0, keepdim=True), mean, atol=5e-3, rtol=0)
    one = GaussianMixture(torch.ones(1), torch.zeros(1, 2, dtype=f64), torch.full((1,), 0.2))
    draws = sdedit_posterior_sample(one, x_s.expand(200_000, 2), 0.4, p, torch.Generator().manual_seed(1))
    t = torch.tensor(0.4, dtype=f64)
    a2, s2 = float(p.alpha(t)) ** 2, float(p.sigma(t)) ** 2
    torch.testing.assert_close(draws.var(0), torch.full((2,), 0.2 * s2 / (a2 * 0.2 + s2), dtype=f64), rtol=0.02, atol=0)
