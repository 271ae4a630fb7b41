"""Stochastic samplers against the exact data distribution, and the exact identities between them.

Distance: sliced W2 to fresh exact samples, averaged over 16 chunks of 500 (a single SW2 between finite
sets fluctuates by ~20 %, the chunk average by ~8 %), relative to the same statistic between independent
exact sets (the floor). Modes: each sample goes to its most probable component.
"""

import pytest
import torch

from difflab.metrics.lowdim import sliced_wasserstein2
from difflab.process import DiscreteVP, RectifiedFlow
from difflab.sampling import ddim, ddpm, discrete, dpmpp_2m, dpmpp_2m_sde, sample
from tests.sampling.cases import CASES, MIXTURES, denoiser, grid, x_T

CHUNKS, N = 16, 8000
RING = MIXTURES["ring"]


def chunked_sw2(x: torch.Tensor, y: torch.Tensor, chunks: int) -> float:
    pairs = zip(x.chunk(chunks), y.chunk(chunks), strict=True)
    return sum(sliced_wasserstein2(a, b, 64, torch.Generator().manual_seed(1)) for a, b in pairs) / chunks


def sw2_ratio(x: torch.Tensor, mixture, seed: int = 0, chunks: int = CHUNKS) -> float:
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    ref = mixture.sample(n, g)[0]
    floor = sum(chunked_sw2(mixture.sample(n, g)[0], ref, chunks) for _ in range(2)) / 2
    return chunked_sw2(x.to(torch.float64), ref, chunks) / floor


def mode_weight_error(x: torch.Tensor, mixture) -> float:
    comp = mixture.responsibilities(x.to(torch.float64), torch.zeros(x.shape[0]), RectifiedFlow()).argmax(1)
    freq = torch.bincount(comp, minlength=mixture.num_components).double() / x.shape[0]
    return float((freq - mixture.weights).abs().max())


STOCHASTIC = [  # sampler, options, steps, schedule options
    ("ddpm", {"variance": "posterior"}, 100, {}),
    ("ddpm", {"variance": "beta"}, 100, {}),
    ("ddim", {"eta": 0.5}, 100, {}),
    ("dpmpp_2m_sde", {}, 50, {}),
    ("dpmpp_sde", {}, 25, {}),
    ("heun", {"s_churn": 20.0}, 40, {}),
    ("euler_maruyama", {}, 250, {"t_max": 0.999}),
    ("pc", {"snr": 0.1}, 100, {"t_max": 0.999}),
]
SETTINGS = (  # every stochastic sampler on VP, the reverse-SDE family on the other processes as well
    [(s, "vp") for s in STOCHASTIC]
    + [(STOCHASTIC[k], "flow") for k in (0, 3, 4, 6, 7)]
    + [(STOCHASTIC[0], "ddpm"), (STOCHASTIC[3], "ve"), (STOCHASTIC[6], "ve")]
)


@pytest.mark.parametrize(("setting", "process"), SETTINGS, ids=[f"{s[0]}-{s[1].get('variance', '')}-{p}" for s, p in SETTINGS])
def test_stochastic_samplers_reach_the_data(setting, process):
    name, options, steps, grid_options = setting
    out = sample(denoiser(process), (N, 2), sampler=name, steps=steps, seed=1, dtype=torch.float64,
                 schedule="uniform" if process == "flow" else "logsnr", schedule_options=grid_options, **options)
    assert sw2_ratio(out.x, RING) < 1.2
    assert mode_weight_error(out.x, RING) < 0.02


def test_ddpm_on_the_full_chain_matches_the_data():
    """Ho et al.'s sampler with all T = 1000 steps of the discrete chain."""
    D = RING.denoiser(DiscreteVP(), "eps")
    out = sample(D, (4000, 2), sampler="ddpm", steps=1000, schedule="trailing", seed=2, dtype=torch.float64)
    assert out.nfe == 1000 and out.times.numel() == 1001
    assert sw2_ratio(out.x, RING, chunks=8) < 1.2
    assert mode_weight_error(out.x, RING) < 0.02


def test_stochastic_sampler_in_64_dimensions():
    mix = MIXTURES["image64"]
    out = sample(denoiser("vp", "image64"), (2000, 64), sampler="dpmpp_2m_sde", steps=30, seed=3, dtype=torch.float64)
    assert sw2_ratio(out.x, mix, chunks=4) < 1.2
    assert mode_weight_error(out.x, mix) < 0.02


@pytest.mark.parametrize("variance", ["posterior", "beta"])
def test_ddpm_is_algorithm_2_of_ho_et_al(variance):
    """Respaced or not, the step on the discrete chain is x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) eps) /
    sqrt(alpha_t) + sigma_t z, written here from the alphabar table alone."""
    process = DiscreteVP(T=50)
    D = RING.denoiser(process, "eps")
    x = x_T("vp", n=6)
    tau = [50, 40, 25, 9, 1, 0]  # integer steps; a respaced chain has beta_t = 1 - abar_t / abar_s
    ts = torch.tensor(tau, dtype=torch.float64) / 50
    out = ddpm(D, x, ts, generator=torch.Generator().manual_seed(4), variance=variance)
    g = torch.Generator().manual_seed(4)
    abar = process.alphabar(torch.tensor(tau))
    x_hand = x.clone()
    for k in range(len(tau) - 1):
        ab_t, ab_s = abar[k], abar[k + 1]
        beta = 1 - ab_t / ab_s
        eps = D(x_hand, ts[k].expand(6))
        mean = (x_hand - beta / (1 - ab_t).sqrt() * eps) / (1 - beta).sqrt()
        var = beta if variance == "beta" else (1 - ab_s) / (1 - ab_t) * beta
        x_hand = mean + (var.sqrt() * torch.randn(x.shape, generator=g, dtype=x.dtype) if tau[k + 1] > 0 else 0)
    torch.testing.assert_close(out, x_hand, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_ddim_reads_the_neighbour_from_the_grid(spacing):
    """DDIM on a discrete spacing uses alphabar of the next grid step (diffusers #12633 / #11347 read it as
    tau - T // N): x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s) eps_hat."""
    process = DiscreteVP()
    D = RING.denoiser(process, "eps")
    ts = discrete(process, 7, spacing=spacing)
    x = x_T("vp", n=5)
    tau = (ts * 1000).round().long()
    abar = process.alphabar(tau)
    x_hand = x.clone()
    for k in range(7):
        eps = D(x_hand, ts[k].expand(5))
        x0 = (x_hand - (1 - abar[k]).sqrt() * eps) / abar[k].sqrt()
        x_hand = abar[k + 1].sqrt() * x0 + (1 - abar[k + 1]).sqrt() * eps
    torch.testing.assert_close(ddim(D, x, ts), x_hand, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("process", list(CASES))
def test_ddim_with_eta_one_is_ddpm_with_the_posterior_variance(process):
    D, x, ts = denoiser(process), x_T(process, n=16), grid(process, 9)
    a = ddim(D, x, ts, eta=1.0, generator=torch.Generator().manual_seed(9))
    b = ddpm(D, x, ts, variance="posterior", generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("process", list(CASES))
def test_2m_sde_with_eta_zero_is_2m(process):
    D, x, ts = denoiser(process), x_T(process, n=16), grid(process, 9)
    torch.testing.assert_close(dpmpp_2m_sde(D, x, ts, eta=0.0), dpmpp_2m(D, x, ts), rtol=1e-12, atol=1e-12)
