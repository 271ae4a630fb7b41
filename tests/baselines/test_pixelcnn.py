"""PixelCNN: causal masks, a normalized exact likelihood, sampling that matches its own distribution."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from difflab.baselines.base import from_levels
from difflab.baselines.pixelcnn import MaskedConv2d, PixelCNN, channel_groups
from difflab.utils.errors import DifflabError

from .helpers import assert_same_weights, level_data, train_and_resume


def _order(C: int, H: int, W: int) -> torch.Tensor:
    """(C, H, W) raster index of each pixel-channel: (i W + j) C + c (channels innermost)."""
    c, i, j = torch.meshgrid(torch.arange(C), torch.arange(H), torch.arange(W), indexing="ij")
    return (i * W + j) * C + c


def _dependence(f, x: torch.Tensor, out_index: torch.Tensor) -> torch.Tensor:
    """(n_out, n_in) bool: does output position p depend on input position q (summed |Jacobian| > 0),
    both in raster order."""
    n = x[0].numel()
    jac = torch.autograd.functional.jacobian(lambda z: f(z).sum(0), x)  # (C_out..., B, C_in...)
    jac = jac.abs().flatten(end_dim=-x.dim() - 1).sum(1).flatten(1)  # (outputs, n_in)
    dep = torch.zeros(int(out_index.max()) + 1, n, dtype=torch.bool)
    in_index = _order(*x.shape[1:]).flatten()  # input columns in raster order too
    for o, p in enumerate(out_index.flatten().tolist()):
        dep[p, in_index] |= jac[o] > 0
    return dep


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_a_masked_conv_sees_only_the_past(mask_type):
    """Type A: the output at raster position p reads inputs q < p only; type B: q <= p; and every such q
    inside the kernel (no tap lost)."""
    torch.manual_seed(0)
    C, H, W = 3, 3, 3
    conv = MaskedConv2d(C, C, (3, 3), mask_type, channel_groups(C, C), channel_groups(C, C)).double()
    order = _order(C, H, W)
    dep = _dependence(conv, torch.randn(2, C, H, W, dtype=torch.float64), order)
    q = torch.arange(order.numel())
    for p in range(order.numel()):
        assert not dep[p, q > p].any() and (mask_type == "B" or not dep[p, p])
    blue = (1 * W + 1) * C + 2  # blue of pixel (1, 1): its 3 x 3 window holds every earlier position
    assert torch.equal(dep[blue], q <= blue if mask_type == "B" else q < blue)


def test_the_network_is_causal_with_no_blind_spot():
    """Each logit of the whole gated network depends on exactly the positions before it (raster order,
    R < G < B): nothing at or after it, and everything before it (the blind spot of a masked stack
    would drop pixels above and to the right)."""
    torch.manual_seed(0)
    C, H, W = 3, 4, 4
    net = PixelCNN((C, H, W), 4, hidden=12, n_layers=4, kernel_size=3).double()
    order = _order(C, H, W)
    leaks = _dependence(lambda x: net.logits(x).sum(2), torch.randn(4, C, H, W, dtype=torch.float64), order)
    assert not (leaks & (torch.arange(order.numel())[None] >= torch.arange(order.numel())[:, None])).any()
    for name, p in net.named_parameters():  # zero biases: near the top-left corner, where few inputs reach,
        if name.endswith("bias"):  # a random bias can hold a ReLU off for every input (a dead unit, no leak)
            torch.nn.init.zeros_(p)
    logits = lambda x: net.logits(x).sum(2)  # noqa: E731 - (B, C, H, W): the L logits of each position summed
    dep = _dependence(logits, torch.randn(16, C, H, W, dtype=torch.float64), order)  # 16: no ReLU off for all
    q = torch.arange(order.numel())
    for p in range(order.numel()):
        assert torch.equal(dep[p], q < p), p


def test_the_top_rows_alone_give_the_same_logits():
    """Row i depends on rows <= i only: the network on rows 0..i reproduces the full image's logits
    there (what sampling relies on to skip the rows below)."""
    torch.manual_seed(0)
    net = PixelCNN((3, 5, 4), 3, hidden=6, n_layers=3, kernel_size=5, num_classes=2).double()
    x, y = torch.randn(2, 3, 5, 4, dtype=torch.float64), torch.tensor([0, 2])
    full = net.logits(x, y)
    for i in range(5):
        assert torch.allclose(net.logits(x[:, :, : i + 1], y), full[..., : i + 1, :], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("C", [1, 3])
def test_log_probabilities_sum_to_one_over_all_images(C):
    """2 x 2 images with L = 2 levels: exp(log P) over all 2^(4C) images sums to 1 (float64)."""
    torch.manual_seed(1)
    net = PixelCNN((C, 2, 2), 2, hidden=3 * C, n_layers=2, kernel_size=3).double()
    levels = torch.tensor(list(itertools.product([0, 1], repeat=4 * C)))  # (2^(4C), 4C), raster order
    x = from_levels(levels.view(-1, 2, 2, C).permute(0, 3, 1, 2), 2, torch.float64)  # channels innermost
    logp = net.log_likelihood(x)
    assert logp.dtype == torch.float64 and (logp < 0).all()
    assert abs(torch.logsumexp(logp, 0).item()) < 1e-12


class HandSet(PixelCNN):
    """A 1 x 2 x 2, L = 3 PixelCNN whose conditionals are a fixed table: logit of level l at pixel p is
    w[p, l] + (level of the previous pixel == l) * 1.5 (a Markov chain in raster order)."""

    w = torch.tensor([[0.0, 1.0, -1.0], [0.5, 0.0, 0.0], [-1.0, 0.0, 1.0], [0.3, -0.3, 0.0]], dtype=torch.float64)

    def logits(self, x, labels=None):
        B, _, h, _ = x.shape  # sampling passes the top h rows
        j = ((x.double() + 1) / 1.0).round().long().flatten(1)  # (B, 2h) levels, L = 3: spacing 1
        prev = torch.cat([torch.full_like(j[:, :1], -1), j[:, :-1]], 1)  # (B, 2h)
        out = self.w[None, : 2 * h] + 1.5 * (prev[:, :, None] == torch.arange(3)).double()  # (B, 2h, 3)
        return out.permute(0, 2, 1).reshape(B, 1, 3, h, 2).to(x.dtype)


def _exact_probabilities() -> dict[tuple, float]:
    probs = {}
    for img in itertools.product(range(3), repeat=4):
        p, prev = 1.0, -1
        for pos, lv in enumerate(img):
            row = HandSet.w[pos] + 1.5 * (torch.arange(3) == prev).double()
            p *= torch.softmax(row, 0)[lv].item()
            prev = lv
        probs[img] = p
    return probs


def test_sequential_sampling_matches_the_distribution():
    """40000 samples of the hand-set model: each of the 81 images' frequency within 4.5 binomial
    standard deviations of its exact probability (two-sided), and log_likelihood agrees exactly."""
    net = HandSet((1, 2, 2), 3, hidden=1, n_layers=1, kernel_size=1)
    n = 40_000
    x = net.sample(n, generator=torch.Generator().manual_seed(0), device="cpu")
    levels = ((x + 1) / 1.0).round().long().flatten(1)
    counts = torch.zeros(81, dtype=torch.float64)
    counts.index_add_(0, (levels * torch.tensor([27, 9, 3, 1])).sum(1), torch.ones(n, dtype=torch.float64))
    exact = _exact_probabilities()
    p = torch.tensor([exact[img] for img in itertools.product(range(3), repeat=4)], dtype=torch.float64)
    assert abs(p.sum().item() - 1) < 1e-12
    sd = (p * (1 - p) / n).sqrt()
    assert ((counts / n - p).abs() <= 4.5 * sd).all()
    imgs = from_levels(torch.tensor(list(itertools.product(range(3), repeat=4))).view(-1, 1, 2, 2), 3)
    assert torch.allclose(net.log_likelihood(imgs).exp(), p, rtol=1e-6, atol=0)


def test_sampling_is_reproducible_and_conditional_models_take_labels():
    torch.manual_seed(0)
    net = PixelCNN((1, 3, 3), 5, hidden=4, n_layers=2, kernel_size=3, num_classes=2)
    assert net.nfe_per_sample == 9
    y = torch.tensor([0, 1, 1])
    a = net.sample(3, generator=torch.Generator().manual_seed(4), device="cpu", labels=y)
    b = net.sample(3, generator=torch.Generator().manual_seed(4), device="cpu", labels=y)
    assert torch.equal(a, b) and a.shape == (3, 1, 3, 3) and a.abs().max() <= 1
    lp_y, lp_null = net.log_likelihood(a, labels=y), net.log_likelihood(a)
    assert lp_y.shape == (3,) and not torch.equal(lp_y, lp_null)
    loss = net(a, {"class_labels": y})  # the trainer's path: -log P / D per image
    assert torch.allclose(loss.double(), -lp_y / 9, rtol=1e-5)
    with pytest.raises(DifflabError, match="class indices in 0..1; got values from 0 to 2"):
        net.log_likelihood(a, labels=torch.tensor([0, 1, 2]))
    with pytest.raises(DifflabError, match=r"3 class indices in 0..1, one per image; got shape \(2,\)"):
        net.sample(3, generator=torch.Generator(), labels=torch.tensor([0, 1]))
    with pytest.raises(DifflabError, match="not on the 5 declared levels"):
        net.log_likelihood(a + 0.1)


def test_the_objective_trains_and_resumes_bit_exactly(tmp_path):
    """AdamW on -log P / D through the shared Trainer, class-conditional with condition dropout:
    stopped at step 2 and resumed, the run ends on the straight run's weights, EMA and losses."""
    straight, resumed, loss_a, loss_b = train_and_resume(tmp_path, "pixelcnn", level_data(), hidden=4, n_layers=2,
                                                         kernel_size=3, num_classes=3)
    assert_same_weights(resumed.model, straight.model)
    assert_same_weights(resumed.ema.module, straight.ema.module)
    assert loss_a == loss_b and len(loss_a) == 4
    assert abs(loss_a[0] - math.log(5)) < 0.3  # nats per dimension: about log L at initialization
