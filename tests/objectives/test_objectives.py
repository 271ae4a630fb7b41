"""Losses: targets reduce to the seeds' formulas; weightings mean the same in every parameterization."""

import pytest
import torch

from difflab.analysis import image_like_mixture
from difflab.objectives import WEIGHTING_NAMES, DiffusionLoss, TimeSampler
from difflab.param import NetworkDenoiser
from difflab.process import VPSDE, DiscreteVP, RectifiedFlow
from tests.objectives.fixed_net import Fixed

f64 = torch.float64


def test_l_simple_of_seed_001():
    """eps-prediction, uniform discrete t, uniform weighting: ||eps - eps_theta(sqrt(abar) x0 + sqrt(1-abar) eps, t)||^2."""
    p = DiscreteVP()
    x0 = torch.randn(6, 1, 4, 4)
    pred = torch.randn(6, 1, 4, 4)
    model = NetworkDenoiser(Fixed(pred), p, "eps")
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
    model = NetworkDenoiser(Fixed(v), p, "velocity")
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
