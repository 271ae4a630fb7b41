"""The continuous-time ELBO and the discrete DDPM bound against the exact mixture NLL: the bound holds and
its gap is reported and bounded above."""

import math

import pytest
import torch

from difflab.analysis.gaussian_mixture import GaussianMixture
from difflab.likelihood.elbo import continuous_elbo, discrete_vlb
from difflab.process import DiscreteVP
from difflab.utils.errors import DifflabError
from tests.likelihood.cases import PROCESS, case


def gap_and_stderr(result, nll):
    """Mean gap bound - NLL over the batch (nats per sample) and its standard error."""
    return (result.nll - nll).mean(), result.nll_stderr.pow(2).sum().sqrt() / nll.shape[0]


@pytest.mark.parametrize(("name", "n", "samples"), [("ring", 64, 256), ("64d", 16, 128)])
def test_continuous_elbo_bounds_the_exact_nll_with_a_small_gap(name, n, samples):
    mix, den, x, nll = case(name, n, seed=4)
    r = continuous_elbo(den, x, samples=samples, generator=torch.Generator().manual_seed(6))
    gap, se = gap_and_stderr(r, nll)
    # the exact denoiser makes the bound tight up to the prior and t0 decoder: gap ~ 0 within its error
    assert gap > -3 * se, (gap, se)
    assert gap < 3 * se + 0.01 * mix.dim, (gap, se)
    assert float(se) < 0.1 * mix.dim  # the estimate is precise enough for both checks to bite


def test_two_time_densities_estimate_the_same_integral():
    _, den, x, _ = case("ring", 32, seed=5)
    a = continuous_elbo(den, x, samples=256, t_density="log_snr", generator=torch.Generator().manual_seed(1))
    b = continuous_elbo(den, x, samples=256, t_density="uniform", generator=torch.Generator().manual_seed(2))
    diff = (a.nll - b.nll).mean()
    se = (a.nll_stderr.pow(2) + b.nll_stderr.pow(2)).sum().sqrt() / 32
    assert abs(float(diff)) < 3 * float(se)
    assert float(b.nll_stderr.mean()) > float(a.nll_stderr.mean())  # log-SNR sampling: the lower variance


def test_discrete_vlb_bounds_the_exact_discrete_nll():
    # 4 components inside [-1, 1], 8-bit data, a 100-step chain (Ho et al.'s betas scaled by 1000 / T)
    means = torch.tensor([[0.5, 0.5], [-0.5, 0.5], [0.5, -0.5], [-0.5, -0.5]], dtype=torch.float64)
    mix = GaussianMixture(torch.ones(4), means, torch.full((4,), 0.1**2))
    process = DiscreteVP(T=100, beta_start=1e-3, beta_end=0.2)
    x, _ = mix.sample(24, torch.Generator().manual_seed(0))
    x = torch.round((x + 1) * 127.5) / 127.5 - 1
    # bins (2/255) are tiny next to the std 0.1: P(bin) = p(x) Delta^D to O(Delta^2 / std^2)
    nll = -mix.log_prob_t(x, torch.tensor(0.0), process) - 2 * math.log(2 / 255)
    r = discrete_vlb(mix.denoiser(process), x, samples=2, generator=torch.Generator().manual_seed(1))
    gap = (r.nll - nll).mean()
    se = r.nll_stderr.pow(2).sum().sqrt() / 24
    assert gap > -3 * se, (gap, se)
    assert gap < 3 * se + 0.5 * 2, (gap, se)  # 100 steps: a real but small gap (measured ~0.24 nats/dim)
    assert r.nfe == 200


@pytest.mark.parametrize(
    ("fn", "kwargs", "needle"),
    [(continuous_elbo, {"samples": 0}, "samples"), (continuous_elbo, {"t_density": "beta"}, "unknown time density"),
     (continuous_elbo, {"levels": 17}, "17 declared levels"), (discrete_vlb, {"levels": None}, "needs data on discrete levels"),
     (discrete_vlb, {}, "needs a discrete process")],
)
def test_bounds_bad_input_one_clear_message(fn, kwargs, needle):
    _, den, _, _ = case("ring", 2)
    with pytest.raises(DifflabError, match=needle):
        fn(den, torch.full((2, 2), -1 + 2 / 255, dtype=torch.float64), **kwargs)  # on the 256 levels, off the 17


def test_a_wrong_model_has_a_positive_gap_equal_to_its_kl_within_error():
    # the exact denoiser of a ring of 1.2x the radius: the model p' is known in closed form, the ELBO is
    # tight to -log p', so ELBO - (-log q) estimates KL(q || p') > 0 on samples of q
    mix, _, x, nll = case("ring", 64, seed=8)
    wrong = GaussianMixture(mix.weights, mix.means * 1.2, mix.variances)
    r = continuous_elbo(wrong.denoiser(PROCESS), x, samples=256, generator=torch.Generator().manual_seed(9))
    nll_wrong = -wrong.log_prob_t(x, torch.tensor(0.0), PROCESS)
    gap, se = gap_and_stderr(r, nll)
    kl = (nll_wrong - nll).mean()  # Monte-Carlo KL(q || p') on the same samples
    assert float(kl) > 10 * float(se)  # a gap the estimate resolves
    assert abs(float(gap - kl)) < 3 * float(se), (gap, kl, se)
    assert float(gap) > 0


def test_class_conditional_elbo_bounds_the_exact_conditional_nll():
    # cond rows follow their data point through the n draws: the bound of p(x | y) for each class label
    mix, den, x, _ = case("ring", 32, seed=10)
    y = torch.arange(32) % 8  # each point scored under one of the 8 components' classes
    cond = {"class_labels": y}
    nll = -mix.log_prob_t(x, torch.tensor(0.0), PROCESS, cond)
    r = continuous_elbo(den, x, cond=cond, samples=256, generator=torch.Generator().manual_seed(11))
    gap, se = gap_and_stderr(r, nll)
    assert -3 * se < gap < 3 * se + 0.01 * 2, (gap, se)
