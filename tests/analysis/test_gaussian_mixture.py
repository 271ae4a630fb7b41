"""The exact mixture denoiser: autograd score, Tweedie, Bayes by Monte Carlo, exact sampling."""

import math

import pytest
import torch

from difflab.analysis import GaussianMixture, empirical_mixture, image_like_mixture, ring_mixture
from difflab.param import PARAMETERIZATIONS
from difflab.process import VESDE, VPSDE, DiscreteVP, RectifiedFlow

f64 = torch.float64
PROCESSES = [DiscreteVP(), VPSDE(), VESDE(), RectifiedFlow()]


@pytest.mark.parametrize("process", PROCESSES, ids=repr)
@pytest.mark.parametrize("mix", [ring_mixture(), image_like_mixture(dim=16, k=4)], ids=["ring", "image16"])
def test_score_is_the_gradient_of_log_p_t(process, mix, gen):
    x = torch.randn(12, mix.dim, generator=gen, dtype=f64) * 2
    t = torch.linspace(0.05, 0.95, 12, dtype=f64)
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(mix.log_prob_t(xr, t, process).sum(), xr)
    torch.testing.assert_close(mix.score(x, t, process), grad, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("process", PROCESSES, ids=repr)
def test_tweedie(process, gen):
    """E[x0 | x_t] = (x_t + sigma^2 grad log p_t(x_t)) / alpha."""
    mix = image_like_mixture(dim=16, k=4)
    x = torch.randn(12, 16, generator=gen, dtype=f64)
    t = torch.linspace(0.05, 0.95, 12, dtype=f64)
    a, s = process.alpha(t)[:, None], process.sigma(t)[:, None]
    torch.testing.assert_close(mix.posterior_mean(x, t, process), (x + s**2 * mix.score(x, t, process)) / a)


def test_posterior_mean_is_the_regression_function(gen):
    """E[x0 | x_t] minimizes squared error: residuals x0 - E[x0|x_t] are uncorrelated with functions of x_t."""
    mix, p = ring_mixture(), VPSDE()
    x0, _ = mix.sample(200_000, gen)
    t = torch.full((x0.shape[0],), 0.4, dtype=f64)
    x_t = p.sample_xt(x0, t, torch.randn(x0.shape, generator=gen, dtype=f64))
    resid = x0 - mix.posterior_mean(x_t, t, p)
    for feature in (x_t[:, :1], x_t[:, 1:] ** 2, torch.tanh(x_t[:, :1] * x_t[:, 1:])):
        corr = (resid * feature).mean(0) / (resid.std(0) * feature.std())
        assert float(corr.abs().max()) < 0.01
    # and it beats a slightly perturbed estimator
    worse = ((x0 - 1.05 * mix.posterior_mean(x_t, t, p)) ** 2).mean()
    assert float((resid**2).mean()) < float(worse)


def test_exact_sampling_moments(gen):
    mix = GaussianMixture(torch.tensor([0.2, 0.8]), torch.tensor([[-2.0], [1.0]]), torch.tensor([0.25, 0.04]))
    x, comp = mix.sample(200_000, gen)
    assert abs(float((comp == 0).double().mean()) - 0.2) < 0.005
    assert abs(float(x.mean()) - (0.2 * -2 + 0.8 * 1)) < 0.01
    var = 0.2 * 0.25 + 0.8 * 0.04 + 0.2 * 0.8 * 9
    assert abs(float(x.var()) / var - 1) < 0.01


@pytest.mark.parametrize("param", PARAMETERIZATIONS)
def test_denoiser_contract_in_every_parameterization(param, gen):
    mix, p = image_like_mixture(dim=16, k=4), VPSDE()
    d = mix.denoiser(p, param)
    x = torch.randn(5, 1, 4, 4, generator=gen)  # image-shaped input, float32
    t = torch.full((5,), 0.3)
    out = d(x, t)
    assert out.shape == x.shape and out.dtype == torch.float32
    pred = d.predict(x, t)
    torch.testing.assert_close(pred.x0.double().reshape(5, 16), mix.posterior_mean(x.reshape(5, 16), t, p),
                               rtol=1e-5, atol=1e-5)


def test_class_conditioning_restricts_to_components():
    mix, p = ring_mixture(), RectifiedFlow()
    x = torch.zeros(3, 2, dtype=f64)
    t = torch.full((3,), 0.5, dtype=f64)
    cond = {"class_labels": torch.tensor([0, 3, 3]), "drop": torch.tensor([False, False, True])}
    r = mix.responsibilities(x, t, p, cond)
    assert float(r[0, 0]) == 1.0 and float(r[1, 3]) == 1.0
    torch.testing.assert_close(r[2], torch.full((8,), 1 / 8, dtype=f64))


def test_ideal_denoiser_of_a_finite_set_memorizes(gen):
    """At small noise the closed-form ideal denoiser returns the nearest training point (seed 000)."""
    data = torch.randn(20, 6, generator=gen, dtype=f64)
    mix, p = empirical_mixture(data), VPSDE()
    x_t = p.sample_xt(data, torch.full((20,), 0.02, dtype=f64), torch.randn(20, 6, generator=gen, dtype=f64))
    x0_hat = mix.posterior_mean(x_t, torch.full((20,), 0.02, dtype=f64), p)
    torch.testing.assert_close(x0_hat, data, rtol=0, atol=1e-6)


def test_log_prob_at_t_is_normalized():
    """p_t integrates to 1 on a 2-D grid."""
    mix, p = ring_mixture(), VESDE(sigma_min=0.01, sigma_max=3.0)
    lin = torch.linspace(-8, 8, 401, dtype=f64)
    grid = torch.stack(torch.meshgrid(lin, lin, indexing="ij"), -1).reshape(-1, 2)
    t = torch.full((grid.shape[0],), 0.5, dtype=f64)
    mass = torch.exp(mix.log_prob_t(grid, t, p)).sum() * (16 / 400) ** 2
    assert abs(float(mass) - 1) < 1e-3


def test_bad_shapes():
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture(torch.ones(3), torch.zeros(2, 2), torch.ones(2))
    with pytest.raises(ValueError, match="D = 2"):
        ring_mixture().score(torch.zeros(1, 3), torch.tensor([0.5]), VPSDE())
    with pytest.raises(ValueError, match="square"):
        image_like_mixture(dim=10)
    assert math.isfinite(float(ring_mixture().log_prob_t(torch.zeros(1, 2), torch.tensor([0.5]), VPSDE())))
