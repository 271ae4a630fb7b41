"""Deterministic inversion then reconstruction with the exact denoiser: the error falls with steps at least
as fast as the solver's order; stochastic samplers are refused."""

import math

import pytest
import torch

from difflab.analysis import ring_mixture
from difflab.editing import invert, reconstruct
from difflab.process import VPSDE, RectifiedFlow
from difflab.utils.errors import DifflabError

STEPS = (32, 64, 128)


def roundtrip_errors(process, param, sampler):
    mix = ring_mixture()
    d = mix.denoiser(process, param)
    x0 = mix.sample(128, torch.Generator().manual_seed(0))[0]
    errors = []
    for steps in STEPS:
        inv = invert(d, x0, sampler=sampler, steps=steps, schedule="uniform")
        assert inv.nfe == (steps if sampler == "ddim" else 2 * steps - 1 - (process.name == "flow"))
        rec = reconstruct(d, inv.x, inv.times, sampler=sampler)
        errors.append(float((rec.x - x0).square().mean().sqrt()))
    return errors


@pytest.mark.parametrize(("process", "param"), [(RectifiedFlow(), "velocity"), (VPSDE(), "eps")], ids=["flow", "vp"])
@pytest.mark.parametrize(("sampler", "order"), [("ddim", 1), ("heun", 2)])
def test_reconstruction_error_falls_at_the_solvers_order(process, param, sampler, order):
    """Measured slopes (log2 of the error ratio per doubling): ddim ~1.0-1.6, heun 2.4-3.3 (the Heun round
    trip cancels its leading error term, forwards and backwards being adjoint)."""
    errors = roundtrip_errors(process, param, sampler)
    slopes = [math.log2(errors[i] / errors[i + 1]) for i in range(len(errors) - 1)]
    assert min(slopes) > order - 0.3, (errors, slopes)
    if order == 1:
        assert max(slopes) < 1.8, (errors, slopes)  # first order really is first order
    assert errors[-1] < (0.02 if order == 1 else 2e-3)


def test_noise_of_an_image_is_gaussian_like():
    """Inverting exact data with the exact denoiser gives x_T ~ N(0, I): mean ~0, variance ~1 per dimension."""
    mix = ring_mixture()
    d = mix.denoiser(RectifiedFlow(), "velocity")
    x0 = mix.sample(4000, torch.Generator().manual_seed(1))[0]
    z = invert(d, x0, sampler="heun", steps=40).x
    assert float(z.mean(0).abs().max()) < 0.06 and float((z.var(0) - 1).abs().max()) < 0.08


@pytest.mark.parametrize(("sampler", "options", "message"), [
    ("ddpm", {}, "inversion needs a deterministic sampler"),
    ("euler_maruyama", {}, "inversion needs a deterministic sampler"),
    ("ddim", {"eta": 0.5}, "inversion needs a deterministic sampler"),
    ("heun", {"s_churn": 1.0}, "inversion needs a deterministic sampler"),
    ("unipc", {}, "written for ddim, euler and heun; 'unipc' is deterministic"),
])
def test_stochastic_or_unsupported_samplers_are_refused(sampler, options, message):
    mix = ring_mixture()
    with pytest.raises(DifflabError, match=message):
        invert(mix.denoiser(VPSDE(), "eps"), torch.zeros(2, 2, dtype=torch.float64), sampler=sampler, **options)
