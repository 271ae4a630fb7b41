"""The linear-multistep family on eps (DEIS, iPNDM, PLMS) against exact answers: quadrature that must be
exact for polynomial eps, the order of convergence to the exact mixture's probability-flow solution, and
the final jump into the data end."""

import math

import pytest
import torch

from difflab.process import VESDE, DiscreteVP
from difflab.sampling import SAMPLERS, check_grid, discrete, uniform_time
from tests.sampling.cases import CASES
from tests.sampling.test_convergence import fitted_slope

f64 = torch.float64


class PolynomialEps:
    """An eps-prediction 'denoiser' whose eps_hat is a fixed polynomial of u (t or sigma) for every x: the
    ODE dx/dsigma = eps_hat (VE, alpha = 1) is then pure quadrature, x(end) = x(start) + int eps dsigma."""

    parameterization = "eps"
    process = VESDE()

    def __init__(self, coefficients, variable):
        self.c, self.variable = coefficients, variable

    def value(self, t: torch.Tensor) -> torch.Tensor:
        u = t if self.variable == "t" else self.process.sigma(t)
        return sum(c * u**k for k, c in enumerate(self.c))

    def __call__(self, x, t, cond=None):
        return self.value(t)[:, None].expand_as(x).to(x.dtype)


def exact_integral(D: PolynomialEps, t0: float, t1: float) -> float:
    """int_{sigma(t0)}^{sigma(t1)} eps d sigma by a 64-point Gauss-Legendre rule in t (exact to rounding)."""
    nodes, weights = (torch.as_tensor(v, dtype=f64) for v in __import__("numpy").polynomial.legendre.leggauss(64))
    t = 0.5 * (t0 + t1) + 0.5 * (t1 - t0) * nodes
    t.requires_grad_(True)
    sigma = D.process.sigma(t)
    (dsigma,) = torch.autograd.grad(sigma.sum(), t)
    return float(0.5 * (t1 - t0) * (weights * D.value(t.detach()) * dsigma).sum())


@pytest.mark.parametrize(("name", "options", "variable", "degree", "warm"), [
    ("deis", {"order": 3, "basis": "t", "lower_order_final": False}, "t", 2, 2),
    ("deis", {"order": 2, "basis": "t", "lower_order_final": False}, "t", 1, 1),
    ("deis", {"order": 3, "basis": "rho", "lower_order_final": False}, "sigma", 2, 2),
    ("ipndm", {"order": 4}, "sigma", 3, 3),
    ("plms", {"order": 4}, "sigma", 3, 3),
])
def test_polynomial_eps_is_integrated_exactly_after_warm_up(name, options, variable, degree, warm):
    """Once `warm` steps have filled the history, a step of order p integrates a degree p-1 polynomial
    exactly: DEIS on any grid (here one uniform in t, far from uniform in sigma), iPNDM and PLMS (fixed
    Adams-Bashforth weights) on a grid uniform in sigma."""
    D = PolynomialEps([0.3, -0.2, 0.05, 0.01][: degree + 1], variable)
    if variable == "t":
        ts = uniform_time(D.process, 12, t_max=0.9, t_end=0.2)
    else:
        sig = torch.linspace(float(D.process.sigma(torch.tensor(0.9, dtype=f64))), 2.0, 13, dtype=f64)
        ts = check_grid(D.process.t_from_log_snr(-sig.log()))
    x = torch.ones(1, 1, dtype=f64)
    fn = SAMPLERS[name]
    states = []
    out = fn(D, x, ts, **options, callback=lambda s: states.append(float(s.x)))
    t = ts.tolist()
    exact = states[warm - 1] + exact_integral(D, t[warm], t[-1])
    assert abs(float(out) - exact) < 1e-11
    if degree >= 2:  # a lower order would not be exact: the test can fail
        low = {**options, "order": options["order"] - 1}
        assert abs(float(fn(D, x, ts, **low)) - (x.item() + exact_integral(D, t[0], t[-1]))) > 1e-6


@pytest.mark.parametrize("process", list(CASES))
@pytest.mark.parametrize(("name", "options", "order", "tol"), [
    ("deis", {"order": 1}, 1.0, 0.15),
    ("deis", {"order": 2, "lower_order_final": False}, 2.0, 0.3),
    ("deis", {"order": 3, "lower_order_final": False}, 3.0, 0.6),
    ("ipndm", {"order": 4}, 2.0, 0.35),
    ("plms", {"order": 4}, 2.0, 0.35),
    ("lms", {"order": 4}, 4.0, 0.8),
])
def test_order_of_convergence_on_a_log_snr_grid(name, options, order, tol, process):
    """Against the exact ring mixture's probability-flow solution on grids uniform in log-SNR: DEIS of order
    p converges at order p; iPNDM and PLMS, whose Adams-Bashforth weights assume equal steps in sigma/alpha,
    only at order 2 on such a grid (their O(h^3) local error term f' g'' / 12 does not cancel)."""
    slope, finest = fitted_slope(name, options, process, "ring", (40, 80, 160))
    assert abs(slope - order) < tol, f"{name} {options} on {process}: slope {slope:.2f}, expected {order}"
    assert finest < 0.03 / 4 ** (order - 1)


def test_lms_integrates_a_cubic_in_sigma_exactly_on_a_grid_not_uniform_in_sigma():
    """LMS's weights are integrals of the Lagrange basis in sigma (variable steps), so once 3 steps have filled
    its history a cubic eps(sigma) is integrated exactly on a grid uniform in t (far from uniform in sigma),
    where iPNDM's fixed Adams-Bashforth weights are not exact (the test can fail)."""
    D = PolynomialEps([0.3, -0.2, 0.05, 0.01], "sigma")
    ts = uniform_time(D.process, 12, t_max=0.9, t_end=0.2)
    x = torch.ones(1, 1, dtype=f64)
    states = []
    out = SAMPLERS["lms"](D, x, ts, callback=lambda s: states.append(float(s.x)))
    t = ts.tolist()
    assert abs(float(out) - (states[2] + exact_integral(D, t[3], t[-1]))) < 1e-11
    fixed = SAMPLERS["ipndm"](D, x, ts, order=4)
    assert abs(float(fixed) - float(out)) > 1e-6


@pytest.mark.parametrize("name", ["deis", "ipndm", "plms"])
def test_final_jump_below_a_discrete_tables_sigma_min(name):
    """On a DDPM table the grid ends with a jump from t = 1/T (sigma_min ~ 0.01) to the data end: with
    lower_order_final (DEIS's default) it is DDIM's jump, x = x0_hat of the last evaluation."""
    from tests.sampling.cases import MIXTURES

    process = DiscreteVP()
    D = MIXTURES["ring"].denoiser(process, "eps")
    ts = discrete(process, 10, spacing="leading")  # ends at tau = 0, t = 1/T
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(1), dtype=f64)
    steps = []
    options = {"lower_order_final": True} if name != "plms" else {}
    out = SAMPLERS[name](D, x, ts, **options, callback=steps.append)
    assert float(ts[-1]) == 0.0 and math.isclose(float(ts[-2]), 1 / process.T)
    if name != "plms":
        torch.testing.assert_close(out, steps[-1].x0, rtol=1e-12, atol=1e-12)
    assert bool(torch.isfinite(out).all()) and len(steps) == 10
