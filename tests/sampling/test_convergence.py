"""Deterministic samplers against the exact probability-flow solution of Gaussian mixtures.

Every sampler must converge to the adaptive reference from the same x_T, and the slope of log error vs
log NFE must match its order. The error is the median over samples of the per-sample RMS error: a
sample that starts near the boundary between two modes may switch mode at coarse steps, and one such
sample would otherwise dominate a mean.
"""

import math

import numpy as np
import pytest
import torch

from difflab.process import CustomProcess
from difflab.sampling import SAMPLERS, ddim, euler, uniform_time
from tests.sampling.cases import CASES, MIXTURES, denoiser, grid, reference, x_T


def median_error(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x - ref).square().flatten(1).mean(1).sqrt().median())


def fitted_slope(name: str, options: dict, process: str, mixture: str, steps: tuple[int, ...]) -> tuple[float, float]:
    """(slope of -log error vs log NFE, error at the finest grid)."""
    D, x, ref = denoiser(process, mixture), x_T(process, mixture), reference(process, mixture)
    nfe = [n * (2 if name == "heun" else 1) for n in steps]  # grids end at sigma > 0: Heun corrects every step
    errors = [median_error(SAMPLERS[name](D, x, grid(process, n), **options), ref) for n in steps]
    return -float(np.polyfit(np.log(nfe), np.log(errors), 1)[0]), errors[-1]


ORDERS = [  # sampler, options, order, tolerance, step counts in the asymptotic range
    ("euler", {}, 1.0, 0.15, (40, 80, 160)),
    ("heun", {}, 2.0, 0.4, (20, 40, 80)),
    ("dpmpp_2m", {}, 2.0, 0.4, (20, 40, 80)),
    ("dpmpp_3m", {}, 3.0, 0.5, (40, 80, 160)),
    ("unipc", {"order": 2}, 3.0, 0.4, (40, 80, 160)),
]
SETTINGS = [(p, "ring") for p in CASES] + [("vp", "image64"), ("flow", "image64")]


@pytest.mark.parametrize(("process", "mixture"), SETTINGS)
@pytest.mark.parametrize(("name", "options", "order", "tol", "steps"), ORDERS, ids=[o[0] for o in ORDERS])
def test_order_of_convergence(name, options, order, tol, steps, process, mixture):
    slope, finest = fitted_slope(name, options, process, mixture, steps)
    assert abs(slope - order) < tol, f"{name} on {process}/{mixture}: slope {slope:.2f}, expected {order}"
    assert finest < 1e-2 / 4 ** (order - 1)


@pytest.mark.parametrize(("process", "mixture"), [("vp", "ring"), ("ve", "image64")])
def test_published_third_order_update_is_second_order(process, mixture):
    """Lu et al.'s multistep 3rd-order update carries half the x0'' term: its slope tends to 2, not 3."""
    published, _ = fitted_slope("dpmpp_3m", {"published": True}, process, mixture, (40, 80, 160))
    fixed, _ = fitted_slope("dpmpp_3m", {}, process, mixture, (40, 80, 160))
    assert abs(published - 2.0) < 0.45 and fixed > published + 0.7


def test_third_order_update_integrates_a_quadratic_exactly():
    """With x0_hat(lambda) quadratic and independent of x, the step is pure quadrature: from step 2 on (three
    estimates known) the 3M update must reproduce sigma_t int e^lambda x0 dlambda to rounding."""
    process = CASES["ve"][0]

    class Quadratic:
        parameterization, process = "x0", CASES["ve"][0]

        def __call__(self, x, t, cond=None):
            lam = process.log_snr(t)
            return (0.3 + 0.2 * lam - 0.05 * lam**2)[:, None].expand_as(x).to(x.dtype)

    ts = uniform_time(process, 12, t_end=0.1)
    lam, sig = process.log_snr(ts), process.sigma(ts)

    def antiderivative(l):  # int e^l (0.3 + 0.2 l - 0.05 l^2) dl
        return math.exp(l) * (0.3 + 0.2 * (l - 1) - 0.05 * (l**2 - 2 * l + 2))

    x = torch.ones(1, 1, dtype=torch.float64)
    # start the exact solution at step 2 so that the multistep update runs at full order throughout
    x2 = SAMPLERS["dpmpp_3m"](Quadratic(), x, ts[:3])
    out = SAMPLERS["dpmpp_3m"](Quadratic(), x, ts)
    exact = float(sig[-1] / sig[2]) * float(x2) + float(sig[-1]) * (
        antiderivative(float(lam[-1])) - antiderivative(float(lam[2]))
    )
    published = SAMPLERS["dpmpp_3m"](Quadratic(), x, ts, published=True)
    assert abs(float(out) - exact) < 1e-12  # exact for quadratics once three estimates are known
    assert abs(float(published) - exact) > 1e-4  # the published update is not


@pytest.mark.parametrize("process", list(CASES))
@pytest.mark.parametrize("name", ["unipc", "dpmpp_3m", "heun", "adaptive"])
def test_deterministic_samplers_reach_the_reference(process, name):
    """At 160 steps the third-order solvers are within 1e-4 of the adaptive solution, Heun within 1e-3, and
    the adaptive solver itself, rerun with looser tolerances, within 1e-5."""
    D, x, ref = denoiser(process), x_T(process), reference(process)
    options = {"rtol": 1e-8, "atol": 1e-8} if name == "adaptive" else {}
    out = SAMPLERS[name](D, x, grid(process, 160), **options)
    assert median_error(out, ref) < {"adaptive": 1e-5, "heun": 1e-3}.get(name, 1e-4)


@pytest.mark.parametrize("process", list(CASES))
def test_ddim_is_euler_in_scaled_variables(process):
    """DDIM (eta = 0) equals a hand-written Euler step of dx~/dsigma~ = eps_hat, x~ = x/alpha, sigma~ = sigma/alpha
    (the PF-ODE in EDM's variables), and difflab's euler does the same."""
    D, x = denoiser(process), x_T(process, n=8)
    proc = CASES[process][0]
    ts = grid(process, 7)
    a, s = proc.alpha(ts), proc.sigma(ts)
    x_hand = x.clone()
    for i in range(len(ts) - 1):
        eps = D.predict(x_hand, ts[i].expand(x.shape[0])).eps
        if a[i] == 0:  # start of rectified flow: the limit x' = alpha' x0 + sigma' eps, eps = x
            x_hand = a[i + 1] * D.predict(x_hand, ts[i].expand(x.shape[0])).x0 + s[i + 1] * eps
            continue
        x_tilde = x_hand / a[i] + (s[i + 1] / a[i + 1] - s[i] / a[i]) * eps
        x_hand = a[i + 1] * x_tilde
    torch.testing.assert_close(ddim(D, x, ts), x_hand, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(euler(D, x, ts), x_hand, rtol=1e-10, atol=1e-10)


def test_euler_is_seed_003_rectified_flow_sampler():
    """For rectified flow, Euler in scaled variables is seed 003's loop x <- x - v dt on a uniform t grid."""
    D, x = denoiser("flow"), x_T("flow", n=8)
    proc = CASES["flow"][0]
    ts = uniform_time(proc, 10)
    x_hand = x.clone()
    for i in range(10):
        v = D(x_hand, ts[i].expand(8))  # velocity prediction z - x
        x_hand = x_hand - v * (ts[i] - ts[i + 1])
    torch.testing.assert_close(euler(D, x, ts), x_hand, rtol=1e-10, atol=1e-10)


def test_a_user_process_needs_nothing_but_alpha_and_sigma():
    """A cosine schedule given as two callables (derivatives by autograd, t(lambda) by bisection): the
    solvers converge to the adaptive solution like on the built-in processes."""
    proc = CustomProcess(lambda t: torch.cos(0.5 * math.pi * t), lambda t: torch.sin(0.5 * math.pi * t), t_min=1e-4)
    D = MIXTURES["ring"].denoiser(proc, "v")
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ts = lambda n: uniform_time(proc, n, t_max=0.999, t_end=0.01)  # noqa: E731
    ref = SAMPLERS["adaptive"](D, x, ts(1), rtol=1e-8, atol=1e-8)
    errors = [median_error(SAMPLERS["unipc"](D, x, ts(n)), ref) for n in (40, 80)]
    assert errors[1] < 1e-3 and errors[0] / errors[1] > 4  # at least second order on its way to third
