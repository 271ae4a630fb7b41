"""Multistep consistency sampling: honest NFE, determinism, and exact samples from an exact consistency function."""

from __future__ import annotations

import math

import pytest
import torch

from difflab.param.consistency import ConsistencyDenoiser
from difflab.process import VESDE, RectifiedFlow
from difflab.sampling import SAMPLERS, STOCHASTIC, sample
from difflab.utils.errors import DifflabError

f64 = torch.float64
V = 0.3  # data ~ N(0, V I)
KARRAS = {"schedule": "karras", "schedule_options": {"sigma_max": 80.0, "sigma_min": 0.8}}


class GaussianConsistency:
    """The exact consistency function of N(0, V I) under any process: the probability-flow ODE maps
    x~ = x / alpha at sigma~ to sqrt(V / (V + sigma~^2)) x~ at sigma~ = 0 (a linear flow)."""

    parameterization = "x0"

    def __init__(self, process):
        self.process = process

    def __call__(self, x, t, cond=None):
        a, s = self.process.alpha(t), self.process.sigma(t)
        k = (torch.sqrt(V / (V + (s / a) ** 2)) / a).to(x.dtype)
        return k.reshape(-1, *([1] * (x.ndim - 1))) * x


def test_registered_as_a_noise_drawing_sampler():
    assert "consistency" in SAMPLERS and "consistency" in STOCHASTIC


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_nfe_equals_steps_and_one_callback_per_step(steps):
    D = GaussianConsistency(RectifiedFlow())
    seen = []
    out = sample(D, (8, 2), sampler="consistency", steps=steps, seed=0, callback=seen.append, **KARRAS)
    assert out.nfe == steps and [s.i for s in seen] == list(range(steps))
    assert seen[-1].t_next == 0.0 and torch.equal(seen[-1].x, out.x)


def test_deterministic_under_a_seed_and_one_step_draws_no_noise():
    D = GaussianConsistency(RectifiedFlow())
    a, b = (sample(D, (16, 2), sampler="consistency", steps=3, seed=5, **KARRAS).x for _ in range(2))
    assert torch.equal(a, b)
    assert not torch.allclose(a, sample(D, (16, 2), sampler="consistency", steps=3, seed=6, **KARRAS).x)
    x_T = 80 * torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    one = [sample(D, x_T, sampler="consistency", steps=1, seed=s, **KARRAS).x for s in (1, 2)]
    assert torch.equal(one[0], one[1])  # the one-step model is a function of x_T alone
    # with a fixed x_T, two steps differ between seeds only through the fresh noise at the second level
    two = [sample(D, x_T, sampler="consistency", steps=2, seed=s, **KARRAS).x for s in (1, 2)]
    assert not torch.allclose(two[0], two[1])


@pytest.mark.parametrize("process", [VESDE(), RectifiedFlow()], ids=lambda p: p.name)
@pytest.mark.parametrize("steps", [1, 2, 4])
def test_an_exact_consistency_function_samples_the_data_at_every_step_count(process, steps):
    """x~_T ~ N(0, s_T^2) (the sampler's start) -> one step gives variance V s_T^2 / (V + s_T^2) exactly; every
    re-noised step keeps the variance: v' = V (v + s_i^2) / (V + s_i^2). Sample variance within 5 standard errors."""
    n = 20_000
    out = sample(GaussianConsistency(process), (n, 2), sampler="consistency", steps=steps, seed=0, dtype=f64,
                 **KARRAS)
    sig = [float(process.sigma(t) / process.alpha(t)) for t in out.times[:-1]]
    v = V * sig[0] ** 2 / (V + sig[0] ** 2)
    for s in sig[1:]:
        v = V * (v + s**2) / (V + s**2)
    var = out.x.var(0)
    se = v * math.sqrt(2 / (n - 1))
    assert bool(((var - v).abs() < 5 * se).all()), (var, v)
    assert abs(float(out.x.mean())) < 5 * math.sqrt(v / (2 * n))


def test_a_grid_from_pure_noise_on_rectified_flow_is_refused_with_the_fix():
    D = ConsistencyDenoiser(GaussianConsistency(RectifiedFlow()))
    with pytest.raises(DifflabError, match="sigma_max=80"):
        sample(D, (2, 2), sampler="consistency", steps=2, schedule="uniform", seed=0)
