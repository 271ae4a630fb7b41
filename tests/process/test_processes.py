"""Noise processes against independent computations: chain vs closed form, Bayes, autograd, SDE."""

import math

import pytest
import torch

from difflab.process import (
    VESDE,
    VPSDE,
    CustomProcess,
    DiscreteVP,
    RectifiedFlow,
    make_process,
    shift_time,
)
from difflab.utils.errors import DifflabError

f64 = torch.float64


def all_processes():
    return [
        DiscreteVP(),
        DiscreteVP(schedule="cosine"),
        DiscreteVP(T=10, beta_start=0.01, beta_end=0.5),
        VPSDE(),
        VESDE(),
        RectifiedFlow(),
        CustomProcess(lambda t: torch.cos(t * math.pi / 2), lambda t: torch.sin(t * math.pi / 2)),
    ]


def off_grid_times(p, n=40):
    # avoid the kinks of the discrete process' piecewise-linear log-SNR
    if p.is_discrete:
        return (torch.arange(p.T, dtype=f64) + 0.37)[:: max(1, p.T // n)] / p.T
    return torch.linspace(0.02, 0.98, n, dtype=f64)


@pytest.mark.parametrize("p", all_processes(), ids=repr)
def test_derivatives_match_finite_differences(p):
    t, h = off_grid_times(p), 1e-6
    fd_a = (p.alpha(t + h) - p.alpha(t - h)) / (2 * h)
    fd_s = (p.sigma(t + h) - p.sigma(t - h)) / (2 * h)
    torch.testing.assert_close(p.d_alpha(t), fd_a, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(p.d_sigma(t), fd_s, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("p", all_processes(), ids=repr)
def test_log_snr_and_its_inverse(p):
    t = off_grid_times(p)
    lam = p.log_snr(t)
    assert torch.all(lam[1:] < lam[:-1]), "log-SNR must decrease in t"
    torch.testing.assert_close(lam, torch.log(p.alpha(t) / p.sigma(t)))
    torch.testing.assert_close(p.t_from_log_snr(lam), t, rtol=0, atol=1e-9)


@pytest.mark.parametrize("p", [p for p in all_processes() if not isinstance(p, (VESDE, RectifiedFlow))], ids=repr)
def test_variance_preserving(p):
    t = off_grid_times(p)
    torch.testing.assert_close(p.alpha(t) ** 2 + p.sigma(t) ** 2, torch.ones_like(t))


def test_discrete_table_matches_betas():
    p = DiscreteVP()
    assert p.T == 1000
    torch.testing.assert_close(p.betas[[0, -1]], torch.tensor([1e-4, 0.02], dtype=f64))
    abar = torch.cumprod(1 - p.betas, 0)
    i = torch.arange(1, 1001, dtype=f64)
    torch.testing.assert_close(p.alpha(i / 1000) ** 2, abar, rtol=1e-12, atol=1e-14)
    assert float(p.alpha(torch.tensor(0.0))) == 1.0 and float(p.sigma(torch.tensor(0.0))) == 0.0
    # cosine: alphabar follows f(t)/f(0) until the 0.999 clip bites at the very end
    c = DiscreteVP(schedule="cosine")
    t = torch.arange(1, 1001, dtype=f64) / 1000
    f = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2 / math.cos(0.008 / 1.008 * math.pi / 2) ** 2
    torch.testing.assert_close(c.alphas_cumprod[:990], f[:990], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_iterated_chain_matches_closed_form(schedule):
    """x_i from i forward steps has the closed-form moments sqrt(abar_i) x0 and 1 - abar_i."""
    torch.manual_seed(0)
    p = DiscreteVP(schedule=schedule)
    n = 100_000
    x0 = torch.full((n,), 0.8, dtype=f64)
    x = x0.clone()
    g = torch.Generator().manual_seed(0)
    checks = {10, 250, 600, 1000}
    for i in range(1, 1001):
        x = p.chain_step(x, i, torch.randn(n, generator=g, dtype=f64))
        if i in checks:
            a, s = float(p.alpha(torch.tensor(i / 1000))), float(p.sigma(torch.tensor(i / 1000)))
            se_mean = s / math.sqrt(n)
            assert abs(float(x.mean()) - a * 0.8) < 5 * se_mean
            assert abs(float(x.var()) - s**2) < 5 * s**2 * math.sqrt(2 / n)


def test_posterior_matches_bayes_rule():
    """q(x_{i-1} | x_i, x0) against Bayes' rule on a 1-D grid: q(x_i|x_{i-1}) q(x_{i-1}|x0) / q(x_i|x0)."""
    p = DiscreteVP()
    x0, xi = torch.tensor([0.3], dtype=f64), torch.tensor([0.1], dtype=f64)
    for i in (2, 50, 500, 1000):
        grid = torch.linspace(-4, 4, 200_001, dtype=f64)
        ab_prev = p.alphabar(torch.tensor(i - 1))
        beta = p.betas[i - 1]
        log_prior = -0.5 * (grid - ab_prev.sqrt() * x0) ** 2 / (1 - ab_prev)
        log_lik = -0.5 * (xi - (1 - beta).sqrt() * grid) ** 2 / beta
        w = torch.softmax(log_prior + log_lik, 0)
        mean_num = (w * grid).sum()
        var_num = (w * (grid - mean_num) ** 2).sum()
        mean, var = p.posterior(x0, xi, torch.tensor([i]))
        torch.testing.assert_close(mean, mean_num.reshape(1), rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(var.reshape(()), var_num, rtol=1e-4, atol=1e-9)
        # the generic two-time posterior of the base class is the same distribution
        c_xt, c_x0, v = p.posterior_coefficients(torch.tensor((i - 1) / 1000, dtype=f64), torch.tensor(i / 1000, dtype=f64))
        torch.testing.assert_close(c_xt * xi + c_x0 * x0, mean, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(v, var.reshape(()), rtol=1e-9, atol=1e-14)


def test_vp_sde_coefficients_are_seed_001s():
    p = VPSDE()
    t = torch.linspace(0.01, 1, 50, dtype=f64)
    beta = 0.1 + t * 19.9
    torch.testing.assert_close(p.drift_coef(t), -0.5 * beta)
    torch.testing.assert_close(p.diffusion_sq(t), beta)
    ve = VESDE()
    torch.testing.assert_close(ve.diffusion_sq(t), 2 * ve.sigma(t) ** 2 * math.log(80 / 0.002))


@pytest.mark.parametrize("p", [VPSDE(), VESDE(sigma_min=0.01, sigma_max=5.0), RectifiedFlow()], ids=repr)
def test_forward_sde_reproduces_the_closed_form_marginals(p):
    """Euler-Maruyama on dx = f x dt + g dw from t=0.05 gives q(x_t | x0)'s moments at t = 0.9."""
    g = torch.Generator().manual_seed(3)
    n, t0, t1, steps = 50_000, 0.05, 0.9, 800
    x0 = 1.5
    x = p.alpha(torch.tensor(t0)) * x0 + p.sigma(torch.tensor(t0)) * torch.randn(n, generator=g, dtype=f64)
    ts = torch.linspace(t0, t1, steps + 1, dtype=f64)
    for s, t in zip(ts[:-1], ts[1:], strict=True):
        dt = t - s
        x = x + p.sde_drift(x, s) * dt + p.sde_diffusion(s) * dt.sqrt() * torch.randn(n, generator=g, dtype=f64)
    a, s = float(p.alpha(torch.tensor(t1))), float(p.sigma(torch.tensor(t1)))
    assert abs(float(x.mean()) - a * x0) < 5 * s / math.sqrt(n) + 2e-3 * (1 + abs(a * x0))
    assert abs(float(x.std()) / s - 1) < 0.01


def test_transition_composes():
    p = VPSDE()
    s, t = torch.tensor(0.3, dtype=f64), torch.tensor(0.7, dtype=f64)
    a_ts, s_ts = p.transition(s, t)
    torch.testing.assert_close(a_ts * p.alpha(s), p.alpha(t))
    torch.testing.assert_close(a_ts**2 * p.sigma(s) ** 2 + s_ts**2, p.sigma(t) ** 2)


def test_sample_xt_is_the_closed_form():
    p = RectifiedFlow()
    x0, z = torch.randn(4, 3), torch.randn(4, 3)
    t = torch.tensor([0.0, 0.25, 0.5, 1.0])
    torch.testing.assert_close(p.sample_xt(x0, t, z), (1 - t[:, None]) * x0 + t[:, None] * z)


def test_shift_time():
    t = torch.linspace(0, 1, 11, dtype=f64)
    torch.testing.assert_close(shift_time(t, 1.0), t)
    s = shift_time(t, 3.0)
    assert float(s[0]) == 0 and float(s[-1]) == 1 and torch.all(s[1:-1] > t[1:-1])
    torch.testing.assert_close(s[5], torch.tensor(0.75, dtype=f64))


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: DiscreteVP(T=0), "T"),
        (lambda: DiscreteVP(betas=torch.tensor([0.1, 1.2])), "1.2"),
        (lambda: DiscreteVP(betas=torch.tensor([0.0, 0.1])), "0.0"),
        (lambda: DiscreteVP(schedule="quadratic"), "quadratic"),
        (lambda: VPSDE(beta_min=-1), "beta_min"),
        (lambda: VESDE(sigma_min=5, sigma_max=1), "sigma_max"),
        (lambda: make_process("vpp"), "vpp"),
        (lambda: VPSDE().alpha(torch.tensor([0.5, 1.5])), "1.5"),
        (lambda: RectifiedFlow().sigma(torch.tensor(-0.2)), "-0.2"),
        (lambda: RectifiedFlow().sample_xt(torch.zeros(2, 3), torch.tensor([0.1, 0.2]), torch.zeros(2, 4)), "shape"),
        (lambda: CustomProcess(lambda t: t, lambda t: 1 - t), "decrease"),
    ],
)
def test_bad_input_names_the_value(build, message):
    """One error type (DifflabError, a ValueError, so callers catching ValueError keep working)."""
    with pytest.raises(DifflabError, match=message):
        build()
    assert issubclass(DifflabError, ValueError)


@pytest.mark.parametrize("p", all_processes(), ids=repr)
def test_starts_from_pure_noise_iff_alpha_vanishes_at_one(p):
    one = torch.tensor(1.0, dtype=f64)
    assert p.starts_from_pure_noise == (float(p.alpha(one)) == 0.0)
    assert p.starts_from_pure_noise == isinstance(p, RectifiedFlow)
    assert p.starts_from_pure_noise == (float(p.log_snr(one)) == -math.inf)
