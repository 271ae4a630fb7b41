"""Time grids: formulas against independent computations, end rules, and one clear message per misuse."""

import math

import pytest
import torch

from difflab.process import VESDE, VPSDE, DiscreteVP, RectifiedFlow
from difflab.sampling import (
    GRIDS,
    discrete,
    karras,
    make_grid,
    shift_time,
    shifted,
    uniform_log_snr,
    uniform_time,
)
from difflab.utils.errors import DifflabError

PROCESSES = [DiscreteVP(), VPSDE(), VESDE(), RectifiedFlow()]
CONTINUOUS_GRIDS = ["uniform", "logsnr", "karras", "shift", "polynomial"]


@pytest.mark.parametrize("process", PROCESSES, ids=repr)
@pytest.mark.parametrize("name", CONTINUOUS_GRIDS)
@pytest.mark.parametrize("steps", [1, 2, 7, 50])
def test_grid_ends_length_and_order(process, name, steps):
    ts = make_grid(process, name, steps)
    assert ts.dtype == torch.float64 and ts.shape == (steps + 1,)
    assert float(ts[0]) == 1.0 and float(ts[-1]) == 0.0
    assert bool((ts[1:] < ts[:-1]).all())


@pytest.mark.parametrize("process", [VPSDE(), VESDE(), DiscreteVP()], ids=repr)
def test_log_snr_grid_is_uniform_in_lambda(process):
    """Between the ends, consecutive log-SNR gaps are equal; the spaced points span the process's range."""
    ts = uniform_log_snr(process, 9)
    lam = process.log_snr(ts)
    lo, hi = process.log_snr_range
    spaced = lam if math.isfinite(float(lam[-1])) else lam[:-1]  # sigma(0) = 0: the end is appended
    gaps = spaced[1:] - spaced[:-1]
    torch.testing.assert_close(gaps, gaps.mean().expand_as(gaps), rtol=1e-6, atol=1e-9)
    assert abs(float(spaced[0]) - lo) < 1e-6 and abs(float(spaced[-1]) - hi) < 1e-6


def test_karras_matches_edm_eq_5_on_ve():
    """On VE (alpha = 1) sigma~ is sigma: the grid's sigmas are EDM's eq. 5 with rho = 7."""
    process = VESDE(0.002, 80.0)
    ts = karras(process, 10)
    i = torch.arange(11, dtype=torch.float64)
    edm = (80 ** (1 / 7) + i / 10 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    torch.testing.assert_close(process.sigma(ts), edm, rtol=1e-10, atol=1e-12)


def test_karras_on_vp_spaces_sigma_over_alpha():
    """8 evaluated points follow eq. 5 in sigma/alpha from sigma_max to sigma_min, then the data end t = 0."""
    process = VPSDE()
    ts = karras(process, 8, sigma_min=0.01, sigma_max=50.0)
    s = (process.sigma(ts) / process.alpha(ts))[:-1]
    i = torch.arange(8, dtype=torch.float64)
    edm = (50 ** (1 / 7) + i / 7 * (0.01 ** (1 / 7) - 50 ** (1 / 7))) ** 7
    torch.testing.assert_close(s, edm, rtol=1e-8, atol=1e-12)
    assert float(ts[-1]) == 0.0 and ts.numel() == 9


def test_time_polynomial_is_edms_ramp_in_t():
    """rho = 1 is uniform in t; rho = 2 on a continuous process is DDIM's quadratic spacing t_i = (1 - i/N)^2;
    on a DDPM table the last evaluated time is t = 1/T (its sigma_min), then the jump to the data end."""
    torch.testing.assert_close(make_grid(VPSDE(), "polynomial", 8, rho=1.0), uniform_time(VPSDE(), 8))
    ts = make_grid(VPSDE(), "polynomial", 5, rho=2.0)
    torch.testing.assert_close(ts, torch.tensor([(1 - i / 5) ** 2 for i in range(6)], dtype=torch.float64))
    table = DiscreteVP()
    ts = make_grid(table, "polynomial", 6, rho=3.0)
    lo = (1 / table.T) ** (1 / 3)
    expected = [(1 + i / 5 * (lo - 1)) ** 3 for i in range(6)] + [0.0]
    torch.testing.assert_close(ts, torch.tensor(expected, dtype=torch.float64))
    assert math.isclose(float(ts[-2]), 1 / table.T) and float(ts[-1]) == 0.0
    with pytest.raises(DifflabError, match="rho must be a positive number"):
        make_grid(VPSDE(), "polynomial", 5, rho=0)


def test_shift_is_seed_003_formula():
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    torch.testing.assert_close(shift_time(t, 3.0), 3 * t / (1 + 2 * t))
    ts = shifted(RectifiedFlow(), 4, shift=3.0)
    torch.testing.assert_close(ts, torch.tensor([1.0, 0.9, 0.75, 0.5, 0.0], dtype=torch.float64))
    torch.testing.assert_close(shifted(RectifiedFlow(), 4, shift=1.0), uniform_time(RectifiedFlow(), 4))


def test_discrete_spacings_follow_diffusers():
    """T = 1000, N = 10 (diffusers' 0-based tau; our t = (tau + 1) / T, then the data end t = 0)."""
    p = DiscreteVP()
    tau = {
        "leading": [900, 800, 700, 600, 500, 400, 300, 200, 100, 0],
        "trailing": [999, 899, 799, 699, 599, 499, 399, 299, 199, 99],
        "linspace": [999, 888, 777, 666, 555, 444, 333, 222, 111, 0],
    }
    for spacing, expected in tau.items():
        ts = discrete(p, 10, spacing=spacing)
        assert (ts[:-1] * 1000 - 1).round().long().tolist() == expected and float(ts[-1]) == 0.0
    assert (discrete(p, 10, spacing="leading", steps_offset=1)[:-1] * 1000 - 1).round().long().tolist()[0] == 901


def test_full_chain_grid_visits_every_step():
    ts = make_grid(DiscreteVP(T=50), "trailing", 50)
    torch.testing.assert_close(ts, torch.arange(50, -1, -1, dtype=torch.float64) / 50)


def test_user_times_pass_through():
    ts = make_grid(VPSDE(), [0.9, 0.5, 0.1], 99)
    torch.testing.assert_close(ts, torch.tensor([0.9, 0.5, 0.1], dtype=torch.float64))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: make_grid(VPSDE(), "leading", 10), "needs a discrete-time process"),
        (lambda: make_grid(DiscreteVP(T=10), "trailing", 11), "at most T = 10 steps"),
        (lambda: make_grid(VPSDE(), [0.9, 0.95, 0.1], 3), "must strictly decrease"),
        (lambda: make_grid(VPSDE(), [1.0, -0.1], 1), "must lie in [0, 1]"),
        (lambda: make_grid(VPSDE(), [0.5], 1), "at least 2 times"),
        (lambda: make_grid(VPSDE(), [1.0, float("nan")], 1), "finite times"),
        (lambda: make_grid(VPSDE(), "logsnr", 0), "steps must be an integer >= 1"),
        (lambda: make_grid(VPSDE(), "logsnr", 5, t_max=0.2, t_end=0.3), "0 <= t_end < t_max <= 1"),
        (lambda: make_grid(VPSDE(), "shift", 5, shift=-1.0), "shift must be a positive number"),
        (lambda: make_grid(VPSDE(), "karras", 5, rho=0.0), "rho must be positive"),
        (lambda: make_grid(VPSDE(), "karras", 5, sigma_min=2.0, sigma_max=1.0), "0 < sigma_min < sigma_max"),
        (lambda: make_grid(VESDE(), "karras", 5, sigma_max=1000.0), "noisier than the grid start"),
        (lambda: make_grid(VESDE(), "karras", 5, sigma_min=1e-4), "less noisy than the grid end"),
        (lambda: make_grid(VPSDE(), "uniform", 5, rho=7), "does not take the option(s) ['rho']"),
        (lambda: make_grid(VPSDE(), "quadratic", 5), "valid schedules are: " + ", ".join(sorted(GRIDS))),
    ],
)
def test_misfit_grids_get_one_message(call, message):
    with pytest.raises(DifflabError) as err:
        call()
    assert message in str(err.value)
