"""Probability-flow ODE log-likelihood against the exact mixture log-density."""

import math

import pytest
import torch

from difflab.analysis.gaussian_mixture import GaussianMixture
from difflab.likelihood import dequantize, ode_log_likelihood
from difflab.utils.errors import DifflabError
from tests.likelihood.cases import PROCESS, case, exact_prior


@pytest.mark.parametrize("name", ["ring", "64d"])
def test_ode_exact_divergence_matches_exact_log_p0(name):
    mix, den, x, nll = case(name, 4)
    r = ode_log_likelihood(den, x, prior=exact_prior(mix), rtol=1e-6, atol=1e-6)
    err = (r.nll - nll).abs().max() / mix.dim
    assert err < 0.01, err  # measured ~1e-5 nats/dim
    assert torch.equal(r.nll_stderr, torch.zeros(4))
    assert torch.allclose(r.bits_per_dim, r.nll / (mix.dim * torch.log(torch.tensor(2.0, dtype=torch.float64))))


def test_ode_default_gaussian_prior_within_goal_on_ring():
    mix, den, x, nll = case("ring", 4, seed=1)
    r = ode_log_likelihood(den, x)  # N(0, sigma(1)^2) prior: the literature's estimator
    assert (r.nll - nll).abs().max() / mix.dim < 0.01


@pytest.mark.parametrize(("name", "probe"), [("ring", "rademacher"), ("64d", "gaussian")])
def test_hutchinson_mean_within_three_standard_errors_of_exact(name, probe):
    mix, den, x, _ = case(name, 6, seed=2)
    prior = exact_prior(mix)
    exact = ode_log_likelihood(den, x, prior=prior, rtol=1e-4, atol=1e-4)
    g = torch.Generator().manual_seed(3)
    hutch = ode_log_likelihood(den, x, prior=prior, divergence="hutchinson", probes=16, probe=probe,
                               rtol=1e-4, atol=1e-4, generator=g)
    z = (hutch.nll - exact.nll) / hutch.nll_stderr
    assert bool((hutch.nll_stderr > 0).all())
    assert z.abs().max() < 3.5, z  # per sample
    z_mean = (hutch.nll - exact.nll).mean() / (hutch.nll_stderr.pow(2).sum().sqrt() / 6)
    assert abs(float(z_mean)) < 3, z_mean


def test_hutchinson_is_deterministic_under_a_seed_and_one_probe_has_no_stderr():
    _, den, x, _ = case("ring", 2)
    runs = [ode_log_likelihood(den, x, divergence="hutchinson", probes=1, rtol=1e-4, atol=1e-4,
                               generator=torch.Generator().manual_seed(5)) for _ in range(2)]
    assert torch.equal(runs[0].nll, runs[1].nll)
    assert bool(runs[0].nll_stderr.isnan().all())


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({"divergence": "trace"}, "unknown divergence 'trace'"), ({"divergence": "hutchinson", "probes": 0}, "probes"),
     ({"probe": "sphere", "divergence": "hutchinson"}, "unknown probe"), ({"t_start": 1.0}, "t_start"),
     ({"levels": 17}, "17 declared levels")],
)
def test_ode_bad_input_one_clear_message(kwargs, needle):
    _, den, x, _ = case("ring", 2)
    with pytest.raises(DifflabError, match=needle):
        ode_log_likelihood(den, x, **kwargs)


def test_ode_on_dequantized_levels_is_the_exact_density_of_the_dequantized_point_minus_d_log_delta():
    # a wide 2-D mixture inside [-1, 1] on the 17 levels of digits: the ODE sees x~ = x + Delta (u - 1/2)
    means = torch.tensor([[0.3, -0.2], [-0.4, 0.4]], dtype=torch.float64)
    mix = GaussianMixture(torch.ones(2), means, torch.full((2,), 0.2**2))
    x = torch.round((mix.sample(4, torch.Generator().manual_seed(0))[0].clamp(-1, 1) + 1) * 8) / 8 - 1
    den = mix.denoiser(PROCESS)
    r = ode_log_likelihood(den, x, levels=17, prior=exact_prior(mix), generator=torch.Generator().manual_seed(1))
    x_deq = dequantize(x, 17, torch.Generator().manual_seed(1))  # the same draw
    expected = -mix.log_prob_t(x_deq, torch.tensor(0.0), PROCESS) - 2 * math.log(1 / 8)
    assert (r.nll - expected).abs().max() < 0.01 * 2
    assert torch.allclose(r.bits_per_dim, r.nll / (2 * math.log(2)))
