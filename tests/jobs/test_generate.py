"""generate(): the data range owned by the data set, reverse-SDE samplers on rectified flow, sampler and grid
options checked by name and type, and one message for every value the API refuses.

Oracle: the exact denoiser of an 8-Gaussian ring of radius 2 (difflab.analysis), so the samples' radius
and mode weights are known in closed form (radius 2, each mode 1/8).
"""

import math

import pytest
import torch

from difflab.analysis.gaussian_mixture import ring_mixture
from difflab.data.datasets import ArrayData, digits_dataset, toy2d_dataset, value_range_of
from difflab.jobs.generate import clamp_to_data, generate, resolve_device
from difflab.jobs.runs import RunMeta
from difflab.process import RectifiedFlow
from difflab.utils.errors import DifflabError

RING = ring_mixture()
FLOW = RectifiedFlow()
VECTORS, IMAGES = RunMeta((2,), None, None), RunMeta((1, 8, 8), None, None)


def ring_stats(x: torch.Tensor) -> tuple[float, float]:
    """(mean radius, largest deviation of a mode's share from 1/8), in float64."""
    x = x.to(torch.float64)
    comp = RING.responsibilities(x, torch.zeros(len(x)), FLOW).argmax(1)
    share = torch.bincount(comp, minlength=8).double() / len(x)
    return float(x.norm(dim=1).mean()), float((share - 1 / 8).abs().max())


def test_vector_samples_are_not_clamped_to_the_image_box():
    """The ring has radius 2: clamping each coordinate to [-1, 1] (the old rule) pulls the mean radius to ~1.2."""
    out = generate(RING.denoiser(FLOW, "velocity"), VECTORS, 2000, sampler="heun", steps=20, schedule="default", seed=0)
    radius, share = ring_stats(out.x)
    assert 1.95 < radius < 2.05 and share < 0.03
    assert torch.equal(out.x, out.sampled.x) and out.labels is None


def test_the_data_set_owns_its_range_and_old_runs_fall_back_by_shape():
    assert value_range_of(toy2d_dataset("moons", 64)) is None
    assert value_range_of(digits_dataset()) == (-1.0, 1.0)
    assert value_range_of(ArrayData(torch.zeros(4, 3))) is None  # vectors: unbounded unless said
    assert value_range_of(ArrayData(torch.zeros(4, 3), value_range=(0, 2))) == (0.0, 2.0)
    x = torch.linspace(-3, 3, 7)
    assert torch.equal(clamp_to_data(x, VECTORS), x)  # a run.json without value_range: vectors unclamped
    assert clamp_to_data(x, IMAGES).abs().max() == 1  # ... images in [-1, 1]
    assert clamp_to_data(x).abs().max() == 1  # without meta: the image range, as before

    class Meta:  # a run that records its range (run.json value_range) wins over the shape rule
        data_shape, num_classes, value_range = (2,), None, (-2.0, 2.0)

    assert clamp_to_data(x, Meta()).abs().max() == 2


@pytest.mark.parametrize("sampler", ["euler_maruyama", "pc"])
def test_reverse_sde_samplers_run_on_rectified_flow(sampler):
    """alpha(1) = 0 makes the reverse-SDE drift infinite at t = 1; generate starts them at t_max = 0.999, and
    the samples land on the ring with the right mode weights (they raised "set t_max" before)."""
    out = generate(RING.denoiser(FLOW, "velocity"), VECTORS, 1000, sampler=sampler, steps=100, schedule="default",
                   seed=1)
    assert float(out.sampled.times[0]) == pytest.approx(0.999)
    radius, share = ring_stats(out.x)  # share: binomial sd 0.0105 at n = 1000
    assert 1.9 < radius < 2.1 and share < 0.045
    # an explicit t_max is honoured
    out = generate(RING.denoiser(FLOW, "velocity"), VECTORS, 8, sampler=sampler, steps=4, schedule="uniform", seed=1,
                   schedule_options={"t_max": 0.99})
    assert float(out.sampled.times[0]) == pytest.approx(0.99)


def test_sampler_and_grid_options_reach_the_sampler():
    D = RING.denoiser(FLOW, "velocity")
    a = generate(D, VECTORS, 64, sampler="heun", steps=4, schedule="karras", seed=0, options={"s_churn": 0},
                 schedule_options={"rho": 3})
    b = generate(D, VECTORS, 64, sampler="heun", steps=4, schedule="karras", seed=0, schedule_options={"rho": 7})
    assert not torch.allclose(a.sampled.times, b.sampled.times)
    c = generate(D, VECTORS, 64, sampler="unipc", steps=4, schedule="default", seed=0, options={"order": 1})
    d = generate(D, VECTORS, 64, sampler="unipc", steps=4, schedule="default", seed=0, options={"order": 3})
    assert not torch.allclose(c.x, d.x)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 0}, "--n must be a whole number of samples >= 1"),
        ({"n": -1}, "--n must be a whole number"),
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"guidance": math.nan}, "guidance weight must be a finite number"),
        ({"negative": "blurry"}, "guidance weight 1 never evaluates"),
        ({"options": {"eta": 0.5}}, "sampler 'unipc' (--option) has no option 'eta'; its options are: corrector"),
        ({"options": {"order": "three"}}, "option order: expected an integer; got 'three'"),
        ({"options": {"corrector": 2}}, "option corrector: expected true or false"),
        ({"schedule": "karras", "schedule_options": {"rho": math.inf}}, "option rho: expected a finite number"),
        ({"schedule_options": {"rho": 7}}, "schedule 'uniform' (--schedule-option) has no option 'rho'"),
    ],
)
def test_refused_values_get_one_message(kwargs, message):
    base = {"n": 4, "sampler": "default", "steps": 2, "schedule": "default", "seed": 0}
    with pytest.raises(DifflabError) as err:
        generate(RING.denoiser(FLOW, "velocity"), VECTORS, **{**base, **kwargs})
    assert message in str(err.value)


def test_heun_s_tmax_may_be_infinite():
    """A float option whose default is inf (EDM's s_tmax) accepts inf; the finiteness rule is not blanket."""
    out = generate(RING.denoiser(FLOW, "velocity"), VECTORS, 4, sampler="heun", steps=2, schedule="default", seed=0,
                   options={"s_tmax": math.inf, "s_churn": 1})
    assert torch.isfinite(out.x).all()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_devices_without_hardware_get_one_message():
    assert resolve_device(None) == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(DifflabError, match="CUDA is not available on this machine"):
        resolve_device("cuda")
    with pytest.raises(DifflabError, match="unknown device 'gpu7'"):
        resolve_device("gpu7")
