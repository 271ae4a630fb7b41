"""Inpainting with the exact denoiser against the exact conditional p(x_unknown | x_known)."""

import pytest
import torch

from difflab.analysis.conditional import inpainting_posterior_sample
from difflab.editing import inpaint
from difflab.guidance import classifier_free
from difflab.process import VPSDE, RectifiedFlow
from difflab.sampling import SAMPLERS
from difflab.utils.errors import DifflabError
from tests.editing.cases import sw2, two_modes

N = 1000
MASK = torch.tensor([0.0, 1.0])  # keep x1, regenerate x2


@pytest.fixture(scope="module")
def setting():
    mix = two_modes()
    y = mix.sample(N, torch.Generator().manual_seed(1))[0]
    known = MASK == 0
    exact = inpainting_posterior_sample(mix, y, known, torch.Generator().manual_seed(2))
    floor = sw2(exact, inpainting_posterior_sample(mix, y, known, torch.Generator().manual_seed(3)))
    return mix, y, exact, floor


def wrong_mode(x, y) -> float:
    """Fraction of completions whose x2 lies on the other side from the mode that x1 names."""
    return float(((x[:, 1] > 0) != (y[:, 0] > 0)).double().mean())


def test_repaint_reaches_the_exact_conditional_and_replacement_is_biased(setting):
    """Replacement is known to be biased (it never lets the known x1 steer x2 at high noise); RePaint's
    resampling removes most of it. Measured: replacement ~4x the floor, RePaint (j=5, r=5) ~1.4x."""
    mix, y, exact, floor = setting
    d = mix.denoiser(VPSDE(), "eps")
    replace = inpaint(d, y, MASK, method="replace", sampler="ddpm", steps=40, schedule="uniform", seed=5)
    repaint = inpaint(d, y, MASK, method="repaint", jump_length=5, resample=5, sampler="ddpm", steps=40,
                      schedule="uniform", seed=5)
    assert torch.equal(replace.x[:, 0], y[:, 0]) and torch.equal(repaint.x[:, 0], y[:, 0])
    assert replace.nfe == 40 and repaint.nfe == 200
    assert sw2(repaint.x, exact) < 1.7 * floor
    assert sw2(replace.x, exact) > 2.5 * floor
    assert wrong_mode(repaint.x, y) < 0.02 < wrong_mode(replace.x, y)
    assert wrong_mode(exact, y) < 0.005


def test_regenerating_everything_is_sampling(setting):
    """With mask = 1 everywhere the replacement never acts: the same result as difflab.sample's sampler."""
    mix, y, _, _ = setting
    d = mix.denoiser(RectifiedFlow(), "velocity")
    from difflab.sampling import sample

    ours = inpaint(d, y[:8], torch.ones(2), sampler="heun", steps=6, seed=0)
    plain = sample(d, torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=y.dtype), sampler="heun",
                   steps=6)
    torch.testing.assert_close(ours.x, plain.x, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("sampler", sorted(set(SAMPLERS) - {"adaptive"}))
def test_every_sampler_keeps_the_known_region_and_fills_the_rest(sampler, setting):
    mix, y, _, _ = setting
    d = mix.denoiser(VPSDE(), "v")
    out = inpaint(d, y[:64], MASK, method="repaint", jump_length=3, resample=2, sampler=sampler, steps=10, seed=1)
    assert torch.equal(out.x[:, 0], y[:64, 0]) and bool(torch.isfinite(out.x).all())
    assert wrong_mode(out.x, y[:64]) < 0.25  # the completion follows the known coordinate's mode


def test_inpainting_composes_with_guidance():
    """Class-conditional mixture, CFG toward the mode at (1, 1): the completion follows the guidance."""
    mix = two_modes()
    d = mix.denoiser(VPSDE(), "eps")
    y = torch.zeros(200, 2, dtype=torch.float64)  # x1 = 0 is ambiguous: both modes equally likely
    cond = {"class_labels": torch.ones(200, dtype=torch.long)}
    out = inpaint(d, y, MASK, sampler="ddpm", steps=30, seed=0, cond=cond, guidance=classifier_free(3.0))
    assert float((out.x[:, 1] > 0).double().mean()) > 0.95
    free = inpaint(d, y, MASK, sampler="ddpm", steps=30, seed=0)
    assert 0.3 < float((free.x[:, 1] > 0).double().mean()) < 0.7


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"mask": torch.ones(3)}, "does not fit the image"),
    ({"mask": torch.full((2,), 0.5)}, "only 0 (keep) and 1 (regenerate)"),
    ({"method": "blend"}, "unknown inpainting method 'blend'"),
    ({"method": "repaint", "resample": 0}, "resample must be an integer >= 1"),
    ({"method": "repaint", "jump_length": 2.5}, "jump_length must be an integer >= 1"),
    ({"sampler": "ddpm", "eta": 0.5}, "does not take the option"),
    ({"sampler": "adaptive"}, "fresh noise at every call"),
])
def test_bad_input_gets_one_message(kwargs, message):
    mix = two_modes()
    args = {"mask": MASK, **kwargs}
    with pytest.raises(DifflabError, match=message.replace("(", r"\(").replace(")", r"\)")):
        inpaint(mix.denoiser(VPSDE(), "eps"), torch.zeros(4, 2, dtype=torch.float64), **args)


class Recorder:
    """An eps denoiser that records (x, t) of every call and predicts eps = 0."""

    parameterization = "eps"

    def __init__(self, process):
        self.process, self.calls = process, []

    def __call__(self, x, t, cond=None):
        self.calls.append((x.clone(), t.clone()))
        return torch.zeros_like(x)


def test_known_region_is_renoised_from_the_input_at_each_call():
    """x_in = m x_t + (1 - m)(alpha_t y + sigma_t z) with fresh z (Lugmayr et al. eq. 8), and the answer's
    x0 is y on the known region, the network's x0 (here x_in / alpha, eps = 0) on the rest."""
    from difflab.editing import KnownRegion

    p = VPSDE()
    rec = Recorder(p)
    y = torch.tensor([[0.5, -0.2], [0.1, 0.3]], dtype=torch.float64)
    m = torch.tensor([0.0, 1.0], dtype=torch.float64).expand(2, 2)
    wrapped = KnownRegion(rec, y, m, torch.Generator().manual_seed(7))
    x = torch.tensor([[2.0, 3.0], [4.0, 5.0]], dtype=torch.float64)
    t = torch.full((2,), 0.4, dtype=torch.float64)
    out = wrapped(x, t)
    z = torch.randn(2, 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    a, s = p.alpha(t)[:, None], p.sigma(t)[:, None]
    seen = rec.calls[0][0]
    torch.testing.assert_close(seen[:, 0], (a * y + s * z)[:, 0])
    torch.testing.assert_close(seen[:, 1], x[:, 1])
    torch.testing.assert_close(out[:, 0], y[:, 0])
    torch.testing.assert_close(out[:, 1], x[:, 1] / a[:, 0])
    wrapped(x, t)
    assert not torch.equal(rec.calls[1][0][:, 0], seen[:, 0])  # fresh noise at the next call


def test_repaint_walks_each_block_resample_times():
    """6 steps, jump length 3, 2 passes: the times evaluated are block 1 twice, then block 2 twice."""
    p = VPSDE()
    rec = Recorder(p)
    out = inpaint(rec, torch.zeros(3, 2, dtype=torch.float64), MASK, method="repaint", jump_length=3, resample=2,
                  sampler="ddim", steps=6, schedule="uniform", seed=0)
    ts = [round(float(t[0]), 6) for _, t in rec.calls]
    grid = [round(float(v), 6) for v in out.times]
    assert ts == grid[0:3] * 2 + grid[3:6] * 2
    assert out.nfe == 12
