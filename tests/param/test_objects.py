"""Parameterizations as objects: one registry lookup, names compare equal, the conversions they own, and
the wrapper base that answers with the wrapped denoiser's process and parameterization."""

import copy
import dataclasses
import pickle

import pytest
import torch

from difflab.guidance import ClassifierFreeGuidance, ClassifierGuidance
from difflab.param import (
    EPS,
    PARAMETERIZATIONS,
    VELOCITY,
    X0,
    DenoiserWrapper,
    NetworkDenoiser,
    Parameterization,
    get_parameterization,
)
from difflab.process import VPSDE, RectifiedFlow
from difflab.utils.errors import DifflabError

f64 = torch.float64


def test_registry_objects_are_frozen_and_equal_to_their_names():
    for name, p in PARAMETERIZATIONS.items():
        assert isinstance(p, Parameterization) and p == name and str(p) == name
        assert get_parameterization(name) is p and get_parameterization(p) is p
        with pytest.raises(dataclasses.FrozenInstanceError):
            p.name = "other"
    assert EPS != X0 and EPS != "x0" and len({*PARAMETERIZATIONS.values()}) == 4
    assert copy.deepcopy(X0) is X0 and pickle.loads(pickle.dumps(VELOCITY)) is VELOCITY


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(DifflabError, match="valid parameterizations are: eps, v, velocity, x0"):
        get_parameterization("score")


def test_only_eps_needs_signal_at_pure_noise():
    """At t = 1 of rectified flow (alpha = 0, sigma = 1) x0 is recoverable from x0, v, velocity but not eps."""
    assert [p.name for p in PARAMETERIZATIONS.values() if p.needs_signal] == ["eps"]
    flow, t = RectifiedFlow(), torch.ones(3, dtype=f64)
    x0 = torch.tensor([[1.0], [-2.0], [0.5]], dtype=f64)
    eps = torch.tensor([[0.3], [0.1], [-1.0]], dtype=f64)
    x_t = eps  # alpha = 0, sigma = 1
    for p in PARAMETERIZATIONS.values():
        k = p.coefficients(flow, t, 2, f64)
        pred = p.to_x0_eps(p.target(x0, eps, k), x_t, k)
        if p.needs_signal:
            assert not torch.isfinite(pred.x0).any()
        else:
            torch.testing.assert_close(pred.x0, x0, rtol=0, atol=1e-12)
            torch.testing.assert_close(pred.eps, eps, rtol=0, atol=1e-12)


def test_x0_error_scale_is_the_derivative_of_the_conversion():
    """|d x0_hat / d y| by autograd through to_x0_eps equals x0_error_scale for every parameterization."""
    vp, t = VPSDE(), torch.tensor([0.1, 0.5, 0.9], dtype=f64)
    x_t = torch.tensor([[0.2], [-0.4], [1.1]], dtype=f64)
    for p in PARAMETERIZATIONS.values():
        k = p.coefficients(vp, t, 2, f64)
        y = torch.zeros(3, 1, dtype=f64, requires_grad=True)
        (grad,) = torch.autograd.grad(p.to_x0_eps(y, x_t, k).x0.sum(), y)
        torch.testing.assert_close(grad.abs(), p.x0_error_scale(k), rtol=1e-12, atol=0)


class _Net(torch.nn.Module):
    def forward(self, x, c_noise, cond=None):
        return x * 0.5


def test_denoisers_store_the_object_and_wrappers_forward_it():
    d = NetworkDenoiser(_Net(), VPSDE(), "velocity")
    assert d.parameterization is VELOCITY and copy.deepcopy(d).parameterization is VELOCITY
    with pytest.raises(DifflabError, match="unknown parameterization 'noise'"):
        NetworkDenoiser(_Net(), VPSDE(), "noise")
    for wrapper in (DenoiserWrapper(d), ClassifierFreeGuidance(d, 2.0), ClassifierGuidance(d, lambda x, t: x, 1.0)):
        assert wrapper.parameterization is VELOCITY and wrapper.process is d.process

    class Named:  # a duck-typed denoiser that holds a name
        parameterization, process = "eps", RectifiedFlow()

        def __call__(self, x, t, cond=None):
            return x

    assert DenoiserWrapper(Named()).parameterization is EPS
    with pytest.raises(DifflabError, match="must be callable as D"):
        DenoiserWrapper(object())
