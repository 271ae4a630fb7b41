"""Ideal, LS and ELS machines against closed forms (Kamb & Ganguli 2025; seed 000)."""

import pytest
import torch

from difflab.analysis import GaussianMixture, empirical_mixture
from difflab.analysis.creativity import black_white_set
from difflab.analysis.ideal import IdealScoreMachine
from difflab.analysis.local_score import (
    EquivariantLocalScoreMachine,
    LocalScoreMachine,
    PatchSchedule,
    location_groups,
    unfold_patches,
)
from difflab.process import VPSDE, RectifiedFlow
from difflab.sampling import sample
from difflab.utils.errors import DifflabError

f64 = torch.float64


def data(n=12, c=1, h=5, w=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, h, w, generator=g, dtype=f64).tanh()


def noisy(train, process, t, b=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    x0 = train[torch.randint(0, len(train), (b,), generator=g)] + 0.5 * torch.randn(b, *train.shape[1:], generator=g, dtype=f64)
    tt = torch.full((b,), t, dtype=f64)
    return process.alpha(tt)[:, None, None, None] * x0 + process.sigma(tt)[:, None, None, None] * torch.randn(
        x0.shape, generator=g, dtype=f64), tt


@pytest.mark.parametrize("process", [VPSDE(), RectifiedFlow()], ids=["vp", "flow"])
@pytest.mark.parametrize("param", ["eps", "velocity", "x0"])
def test_ideal_equals_zero_variance_mixture(process, param):
    train = data(30, 2, 4, 4)
    x, t = noisy(train, process, 0.4)
    ideal = IdealScoreMachine(train, process, param, max_elements=13)  # forces many chunks
    exact = empirical_mixture(train).denoiser(process, param)
    assert torch.allclose(ideal(x, t), exact(x, t), rtol=1e-9, atol=1e-9)
    tiny = GaussianMixture(torch.ones(30), train.reshape(30, -1), torch.full((30,), 1e-14)).denoiser(process, param)
    assert torch.allclose(ideal(x, t), tiny(x, t), rtol=1e-6, atol=1e-6)


def test_ideal_mixed_times_in_one_batch():
    process = VPSDE()
    train = data(10)
    x, _ = noisy(train, process, 0.3)
    t = torch.tensor([0.1, 0.3, 0.3, 0.7, 0.9, 0.1], dtype=f64)
    got = IdealScoreMachine(train, process)(x, t)
    want = empirical_mixture(train).denoiser(process, "x0")(x, t)
    assert torch.allclose(got, want, atol=1e-10)


@pytest.mark.parametrize("padding,P", [("zeros", 9), ("zeros", 11), ("circular", 5)])
def test_ls_with_whole_image_patch_is_ideal(padding, P):
    process = VPSDE()
    train = data(15, 2, 5, 5)
    x, t = noisy(train, process, 0.5)
    ls = LocalScoreMachine(train, process, P, "eps", padding=padding, max_elements=50)
    ideal = IdealScoreMachine(train, process, "eps")
    assert torch.allclose(ls(x, t), ideal(x, t), atol=1e-9)
    # a smaller patch is a different machine: the test can fail
    assert not torch.allclose(LocalScoreMachine(train, process, 3, "eps", padding=padding)(x, t), ideal(x, t), atol=1e-3)


def test_boundary_broken_els_with_whole_image_patch_is_ideal():
    """With P >= 2H - 1 every pixel has its own padding pattern, so the broken ELS only matches
    patches at its own location, each covering the whole image."""
    process = RectifiedFlow()
    train = data(10, 1, 4, 4)
    x, t = noisy(train, process, 0.5)
    els = EquivariantLocalScoreMachine(train, process, 7, boundary_broken=True)
    assert torch.allclose(els(x, t), IdealScoreMachine(train, process)(x, t), atol=1e-9)
    assert len(torch.unique(location_groups(8, 8, 3, True))) == 9  # interior, 4 edges, 4 corners


def brute_force_els(train, x, alpha, sigma, P, padding, broken):
    """Direct softmax over every (training image, location) patch, full squared distances, no dedupe."""
    N, C, H, W = train.shape
    keys = unfold_patches(train, P, padding).reshape(N * H * W, -1)
    key_loc = torch.arange(H * W).repeat(N)
    centre = keys.reshape(N * H * W, C, P, P)[:, :, P // 2, P // 2]
    q = unfold_patches(x, P, padding)  # (B, HW, F)
    d2 = ((q[:, :, None, :] - alpha * keys[None, None]) ** 2).sum(-1)  # (B, HW, NHW)
    logits = -d2 / (2 * sigma**2)
    if broken:
        g = location_groups(H, W, P, True)
        logits = logits.masked_fill(g[:, None] != g[key_loc][None, :], -torch.inf)
    w = torch.softmax(logits, dim=-1)
    return (w @ centre).permute(0, 2, 1).reshape(x.shape)


@pytest.mark.parametrize("padding,broken", [("zeros", False), ("zeros", True), ("circular", False)])
def test_els_matches_brute_force(padding, broken):
    process = VPSDE()
    train = (data(6, 2, 5, 5) * 2).round() / 2  # quantized: many duplicate patches to merge
    x, t = noisy(train, process, 0.35, b=3)
    a, s = float(process.alpha(t[0])), float(process.sigma(t[0]))
    els = EquivariantLocalScoreMachine(train, process, 3, padding=padding, boundary_broken=broken, max_elements=40)
    want = brute_force_els(train, x, a, s, 3, padding, broken)
    assert torch.allclose(els.posterior_mean(x, t), want, atol=1e-10)


def shift_set(pattern):
    H, W = pattern.shape[-2:]
    return torch.stack([torch.roll(pattern, (i, j), (-2, -1)) for i in range(H) for j in range(W)])


def test_els_is_translation_equivariant_on_a_shift_invariant_set():
    process = RectifiedFlow()
    g = torch.Generator().manual_seed(3)
    train = shift_set(torch.randn(1, 6, 6, generator=g, dtype=f64).tanh())  # all 36 circular shifts
    x, t = noisy(train, process, 0.6, b=4)
    els = EquivariantLocalScoreMachine(train, process, 3, padding="circular")
    out = els.posterior_mean(x, t)
    for shift in [(1, 0), (2, 3), (5, 1)]:
        shifted = els.posterior_mean(torch.roll(x, shift, (-2, -1)), t)
        assert torch.allclose(shifted, torch.roll(out, shift, (-2, -1)), atol=1e-10)
    # on a shift-invariant set the location-bound LS has the same candidates at every location
    ls = LocalScoreMachine(train, process, 3, padding="circular")
    assert torch.allclose(ls.posterior_mean(x, t), out, atol=1e-10)
    # zero padding sees the border: no longer equivariant (the check above can fail)
    z = EquivariantLocalScoreMachine(train, process, 3, padding="zeros", boundary_broken=True)
    assert not torch.allclose(z.posterior_mean(torch.roll(x, (2, 3), (-2, -1)), t),
                              torch.roll(z.posterior_mean(x, t), (2, 3), (-2, -1)), atol=1e-3)


@pytest.mark.parametrize("machine", ["ls", "els"])
def test_black_white_pixels_decide_independently(machine):
    """Two images, all -1 and all +1: a P = 1 local machine gives tanh(alpha x / sigma^2) per pixel,
    the ideal machine tanh(alpha sum(x) / sigma^2) for the whole image (seed 000)."""
    process = VPSDE()
    train = black_white_set(4)
    x, t = noisy(train, process, 0.7, b=5)
    a, s = process.alpha(t)[:, None, None, None], process.sigma(t)[:, None, None, None]
    cls = LocalScoreMachine if machine == "ls" else EquivariantLocalScoreMachine
    assert torch.allclose(cls(train, process, 1).posterior_mean(x, t), torch.tanh(a * x / s**2), atol=1e-12)
    total = x.sum((1, 2, 3), keepdim=True)
    ideal = IdealScoreMachine(train, process).posterior_mean(x, t)
    assert torch.allclose(ideal, torch.tanh(a * total / s**2).expand_as(x), atol=1e-12)


def test_ideal_machine_samples_memorize():
    process = RectifiedFlow()
    train = data(8, 1, 4, 4)
    out = sample(IdealScoreMachine(train, process, "velocity"), (16, 1, 4, 4), sampler="euler", steps=40,
                 seed=0, dtype=f64).x
    nn = torch.cdist(out.reshape(16, -1), train.reshape(8, -1)).min(1).values
    typical = torch.cdist(train.reshape(8, -1), train.reshape(8, -1)).topk(2, largest=False).values[:, 1].median()
    assert float(nn.max()) < 0.05 * float(typical)


def test_patch_schedule_and_errors():
    s = PatchSchedule((1.0, 0.5, 0.1), (7, 5, 3))
    assert [s.size_at(t) for t in (0.95, 0.6, 0.0)] == [7, 5, 3]
    assert PatchSchedule.from_dict(s.to_dict()) == s
    train = data(3)
    with pytest.raises(DifflabError, match="odd"):
        LocalScoreMachine(train, VPSDE(), 4)
    with pytest.raises(DifflabError, match="wraps"):
        EquivariantLocalScoreMachine(train, VPSDE(), 7, padding="circular")
    with pytest.raises(DifflabError, match="circular padding has no border"):
        EquivariantLocalScoreMachine(train, VPSDE(), 3, padding="circular", boundary_broken=True)
    with pytest.raises(DifflabError, match="shape"):
        LocalScoreMachine(train, VPSDE(), 3)(torch.zeros(2, 1, 4, 4), torch.full((2,), 0.5))


def test_every_sampler_runs_the_machines(param="v"):
    """The machines honour the denoiser contract: every registered sampler draws finite images from them."""
    from difflab.sampling.registry import SAMPLERS

    process = VPSDE()
    train = data(6, 1, 4, 4)
    machines = [IdealScoreMachine(train, process, param), LocalScoreMachine(train, process, 3, param),
                EquivariantLocalScoreMachine(train, process, 3, param, boundary_broken=True)]
    for name in sorted(SAMPLERS):
        for m in machines[:1] if name == "adaptive" else machines:  # adaptive: ~600 calls, one machine is enough
            x = sample(m, (2, 1, 4, 4), sampler=name, steps=2, seed=0, dtype=f64).x
            assert x.shape == (2, 1, 4, 4) and bool(torch.isfinite(x).all()), (name, type(m).__name__)


@pytest.mark.parametrize("padding,broken,P", [("zeros", False, 3), ("zeros", True, 5), ("circular", False, 3)])
def test_streamed_els_equals_tabulated_els(padding, broken, P):
    """max_table_elements=0 forces the streamed path (no table, tiny key / query chunks): the same
    softmax as the deduplicated table and as the brute-force one, to 1e-10."""
    process = VPSDE()
    train = (data(7, 2, 5, 6) * 2).round() / 2  # duplicates: the table merges them, the stream does not
    x, t = noisy(train, process, 0.35, b=3)
    a, s = float(process.alpha(t[0])), float(process.sigma(t[0]))
    kw = dict(padding=padding, boundary_broken=broken)
    table = EquivariantLocalScoreMachine(train, process, P, **kw)
    stream = EquivariantLocalScoreMachine(train, process, P, **kw, max_elements=37, max_table_elements=0)
    got = stream.posterior_mean(x, t)
    assert stream.patch_table(P) is None and table.patch_table(P) is not None
    assert torch.allclose(got, table.posterior_mean(x, t), rtol=0, atol=1e-10)
    assert torch.allclose(got, brute_force_els(train, x, a, s, P, padding, broken), rtol=0, atol=1e-10)
    other = EquivariantLocalScoreMachine(train, process, P + 2 if padding == "zeros" else 1, **kw, max_table_elements=0)
    assert not torch.allclose(other.posterior_mean(x, t), got, atol=1e-3)  # the comparison can fail


def test_chunked_table_merges_duplicates_across_chunks():
    """The table built 5 (image, location) pairs at a time holds each distinct patch once, with its total count."""
    train = torch.stack([torch.full((1, 3, 3), v, dtype=f64) for v in (-1.0, 1.0, -1.0, 1.0)])  # 2 distinct images
    els = EquivariantLocalScoreMachine(train, VPSDE(), 1, max_elements=5)
    (locs, keys, _, log_count, centre), = els.patch_table(1)
    assert keys.flatten().tolist() == [-1.0, 1.0] and log_count.exp().tolist() == pytest.approx([18.0, 18.0])
    assert len(locs) == 9 and centre.flatten().tolist() == [-1.0, 1.0]
    small = EquivariantLocalScoreMachine(train, VPSDE(), 1, max_table_elements=1)  # 2 distinct keys > 1 float
    assert small.patch_table(1) is None


def test_streamed_els_whole_image_patch_is_ideal():
    process = RectifiedFlow()
    train = data(6, 1, 4, 4)
    x, t = noisy(train, process, 0.5, b=3)
    els = EquivariantLocalScoreMachine(train, process, 7, boundary_broken=True, max_elements=20, max_table_elements=0)
    assert torch.allclose(els(x, t), IdealScoreMachine(train, process)(x, t), atol=1e-9)


def test_distinct_rows_is_exact_even_when_the_scalar_key_collides():
    from difflab.analysis.local_score import distinct_rows

    keys = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0], [3.0, -1.0]], dtype=f64)
    uniq, inv = distinct_rows(keys)
    assert torch.equal(uniq[inv], keys) and len(uniq) == 3
    w = 1.0 + torch.rand(2, generator=torch.Generator().manual_seed(0), dtype=f64)  # the function's weights
    clash = torch.tensor([[w[1], 0.0], [0.0, w[0]]], dtype=f64)  # different rows, the same scalar w . row
    uniq, inv = distinct_rows(clash)
    assert len(uniq) == 2 and torch.equal(uniq[inv], clash)


@pytest.mark.parametrize("padding,P", [("zeros", 3), ("zeros", 11), ("circular", 5)])
def test_streamed_ls_equals_tabulated_ls(padding, P):
    """max_table_elements=0 streams the LS posterior in blocks of locations x images: same as the table."""
    process = VPSDE()
    train = data(9, 2, 5, 6)
    x, t = noisy(train, process, 0.45, b=3)
    table = LocalScoreMachine(train, process, P, "eps", padding=padding)
    stream = LocalScoreMachine(train, process, P, "eps", padding=padding, max_elements=60, max_table_elements=0)
    assert stream.patch_table(P) is None and table.patch_table(P) is not None
    assert torch.allclose(stream(x, t), table(x, t), rtol=0, atol=1e-10)
    if P == 11:  # a zero-padded patch covering the whole 5x6 image from every pixel: the ideal machine
        assert torch.allclose(stream(x, t), IdealScoreMachine(train, process, "eps")(x, t), atol=1e-9)
