"""SDEdit with the exact denoiser and a stochastic sampler draws from p(x0 | x_s); strength 1 is the prior."""

import pytest
import torch

from difflab.analysis.conditional import sdedit_posterior_sample
from difflab.editing import cut_grid, sdedit
from difflab.guidance import classifier_free
from difflab.process import VPSDE, DiscreteVP, RectifiedFlow
from difflab.sampling import SAMPLERS
from difflab.utils.errors import DifflabError
from tests.editing.cases import sw2, two_modes

f64 = torch.float64
N = 2000


def exact_sdedit(mix, x_in, s, process, seed):
    """x_s ~ q(x_s | x_in), then x0 ~ p(x0 | x_s): the distribution SDEdit should reach."""
    g = torch.Generator().manual_seed(seed)
    t = torch.full((x_in.shape[0],), s, dtype=f64)
    x_s = process.sample_xt(x_in, t, torch.randn(x_in.shape, generator=g, dtype=f64))
    return sdedit_posterior_sample(mix, x_s, s, process, g)


def mode_stats(x):
    """(fraction in the mode at (1, 1), per-mode means, per-mode standard deviations)."""
    pos = x[:, 0] > 0
    return (float(pos.double().mean()), torch.stack([x[pos].mean(0), x[~pos].mean(0)]),
            torch.stack([x[pos].std(0), x[~pos].std(0)]))


@pytest.mark.parametrize("strength", [0.2, 0.3])
def test_sdedit_samples_the_posterior_given_x_s(strength):
    """An off-data input between the modes, nearer (1, 1): the edit picks each mode with the exact
    posterior's probability (0.73 at s = 0.2, 0.62 at s = 0.3, where the prior says 0.5) and matches
    each mode's mean and spread. 300 grid steps: DDPM's own discretization error (a 10% narrower spread
    at 60 steps, in plain sampling too) stays below the tolerance."""
    mix, p = two_modes(), VPSDE()
    x_in = torch.tensor([[0.5, 0.2]], dtype=f64).expand(N, 2)
    exact = exact_sdedit(mix, torch.tensor([[0.5, 0.2]], dtype=f64).expand(200_000, 2), strength, p, 1)
    out = sdedit(mix.denoiser(p, "eps"), x_in, strength, sampler="ddpm", steps=300, schedule="uniform", seed=3)
    assert out.times[0] == strength and out.nfe == out.times.numel() - 1 == round(300 * strength)
    frac, means, stds = mode_stats(out.x)
    frac_x, means_x, stds_x = mode_stats(exact)
    se = (frac_x * (1 - frac_x) / N) ** 0.5
    assert abs(frac - frac_x) < 4 * se and abs(frac_x - 0.5) > 8 * se
    torch.testing.assert_close(means, means_x, atol=0.04, rtol=0)
    torch.testing.assert_close(stds, stds_x, rtol=0.08, atol=0)


def test_strength_one_is_the_prior_and_zero_the_input():
    mix, p = two_modes(), RectifiedFlow()
    d = mix.denoiser(p, "velocity")
    x_in = torch.tensor([[0.3, -0.6]], dtype=f64).expand(N, 2)
    prior = mix.sample(N, torch.Generator().manual_seed(4))[0]
    floor = sw2(prior, mix.sample(N, torch.Generator().manual_seed(5))[0])
    out = sdedit(d, x_in, 1.0, sampler="ddpm", steps=60, seed=3)
    assert sw2(out.x, prior) < 1.5 * floor
    same = sdedit(d, x_in, 0.0, sampler="ddpm", steps=60, seed=3)
    assert torch.equal(same.x, x_in) and same.nfe == 0


def test_the_grid_is_the_full_grid_cut_at_the_strength():
    ts = torch.linspace(1, 0, 11, dtype=f64)
    torch.testing.assert_close(cut_grid(ts, 0.45), torch.tensor([0.45, 0.4, 0.3, 0.2, 0.1, 0.0], dtype=f64))
    torch.testing.assert_close(cut_grid(ts, 0.5), torch.tensor([0.5, 0.4, 0.3, 0.2, 0.1, 0.0], dtype=f64))
    mix = two_modes()
    out = sdedit(mix.denoiser(DiscreteVP(T=100), "eps"), torch.zeros(2, 2, dtype=f64), 0.333, sampler="ddim",
                 steps=10, schedule="trailing", seed=0)
    assert float(out.times[0]) == 0.33  # snapped to the chain's step 33


@pytest.mark.parametrize("strength", [-0.1, 1.5, "half", float("nan")])
def test_strength_outside_the_unit_interval_is_refused(strength):
    mix = two_modes()
    with pytest.raises(DifflabError, match=r"strength must be a number in \[0, 1\]"):
        sdedit(mix.denoiser(VPSDE(), "eps"), torch.zeros(2, 2, dtype=f64), strength)


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_every_sampler_edits_from_the_cut_grid(sampler):
    """Any sampler walks the cut grid: one call per step for one-evaluation samplers, finite output near
    the data, and the input decides the mode at a small strength."""
    mix = two_modes()
    d = mix.denoiser(DiscreteVP(T=200), "v")
    x_in = torch.tensor([[0.9, 1.1], [-1.0, -0.8]], dtype=f64).repeat(16, 1)
    options = {"rtol": 1e-4, "atol": 1e-4} if sampler == "adaptive" else {}
    out = sdedit(d, x_in, 0.3, sampler=sampler, steps=20, seed=0, **options)
    assert out.x.shape == x_in.shape and bool(torch.isfinite(out.x).all())
    assert bool((torch.sign(out.x[:, 0]) == torch.sign(x_in[:, 0])).all())


def test_sdedit_composes_with_guidance():
    """From the midpoint between the modes at strength 0.8, CFG (w = 3) toward class 1 lands on (1, 1)."""
    mix = two_modes()
    d = mix.denoiser(VPSDE(), "eps")
    x_in = torch.zeros(200, 2, dtype=f64)
    cond = {"class_labels": torch.ones(200, dtype=torch.long)}
    guided = sdedit(d, x_in, 0.8, sampler="ddpm", steps=40, seed=0, cond=cond, guidance=classifier_free(3.0))
    assert float((guided.x[:, 0] > 0).double().mean()) > 0.95
    free = sdedit(d, x_in, 0.8, sampler="ddpm", steps=40, seed=0)
    assert 0.3 < float((free.x[:, 0] > 0).double().mean()) < 0.7
