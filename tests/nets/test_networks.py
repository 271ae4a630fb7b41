"""Contract tests shared by MLPNet, UNet and DiT: shapes, dtypes, conditioning, gradients, layouts."""

from __future__ import annotations

import pytest
import torch

from difflab.utils import DifflabError

NUM_CLASSES, CONTEXT_DIM = 5, 12
KINDS = ["mlp", "unet", "dit"]
IMAGE_KINDS = ["unet", "dit"]
C_NOISE = torch.tensor([5.0, 300.0, 800.0])


def sample_x(kind: str, gen: torch.Generator, batch: int = 3, channels: int = 3, size: int = 8) -> torch.Tensor:
    shape = (batch, 3) if kind == "mlp" else (batch, channels, size, size)
    return torch.randn(shape, generator=gen)


def per_sample_gap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs().flatten(1).amax(dim=1)


@pytest.mark.parametrize("kind", IMAGE_KINDS)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [8, 16, 32])
def test_image_shapes_and_dtype(kind, channels, size, gen, perturb, tiny_net):
    net = perturb(tiny_net(kind, channels, size))
    x = sample_x(kind, gen, 2, channels, size)
    out = net(x, C_NOISE[:2])
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert per_sample_gap(net(x.flip(0), C_NOISE[:2]), out).min() > 1e-4  # the output depends on x
    if size == 8:
        out64 = net.double()(x.double(), C_NOISE[:2].double())
        assert out64.dtype == torch.float64
        torch.testing.assert_close(out64.float(), out, atol=1e-4, rtol=1e-4)


def test_mlp_shapes_and_dtype(gen, perturb, tiny_net):
    net = perturb(tiny_net("mlp"))
    x = sample_x("mlp", gen)
    out = net(x, C_NOISE)
    assert out.shape == (3, 3) and out.dtype == torch.float32
    assert net.double()(x.double(), C_NOISE.double()).dtype == torch.float64
    assert per_sample_gap(net(x.double(), C_NOISE.double() + 1), net(x.double(), C_NOISE.double())).min() > 0


@pytest.mark.parametrize("kind", KINDS)
def test_untrained_network_predicts_zero(kind, gen, tiny_net):
    net = tiny_net(kind, num_classes=NUM_CLASSES)
    out = net(sample_x(kind, gen), C_NOISE, {"class_labels": torch.tensor([0, 1, 2])})
    assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("kind", KINDS)
def test_determinism_under_a_seed(kind, gen, tiny_net):
    def build(seed):
        torch.manual_seed(seed)
        return tiny_net(kind, num_classes=NUM_CLASSES)

    a, b, other = build(3), build(3), build(4)
    sa, sb, so = a.state_dict(), b.state_dict(), other.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], so[k]) for k in sa)
    for net in (a, b):
        torch.manual_seed(7)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.1 * torch.randn_like(p))
    x, cond = sample_x(kind, gen), {"class_labels": torch.tensor([1, 2, 3])}
    assert torch.equal(a(x, C_NOISE, cond), b(x, C_NOISE, cond))


@pytest.mark.parametrize("kind", KINDS)
def test_drop_uses_the_learned_null_class(kind, gen, perturb, tiny_net):
    net = perturb(tiny_net(kind, num_classes=NUM_CLASSES))
    x = sample_x(kind, gen)
    y, y_other = torch.tensor([0, 3, 4]), torch.tensor([2, 1, 0])
    everywhere = torch.ones(3, dtype=torch.bool)
    null = net(x, C_NOISE, {"class_labels": y, "drop": everywhere})
    torch.testing.assert_close(net(x, C_NOISE, {"class_labels": y_other, "drop": everywhere}), null)
    torch.testing.assert_close(net(x, C_NOISE, {"class_labels": torch.full((3,), NUM_CLASSES)}), null)
    torch.testing.assert_close(net(x, C_NOISE), null)  # no condition at all = the null condition
    real = net(x, C_NOISE, {"class_labels": y})
    assert per_sample_gap(real, null).min() > 1e-4
    mixed = net(x, C_NOISE, {"class_labels": y, "drop": torch.tensor([True, False, True])})
    torch.testing.assert_close(mixed[[0, 2]], null[[0, 2]])
    torch.testing.assert_close(mixed[1], real[1])


def context_batch(gen):
    ctx = torch.randn(3, 4, CONTEXT_DIM, generator=gen)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    return ctx, mask


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_drop_uses_the_learned_null_context(kind, gen, perturb, tiny_net):
    net = perturb(tiny_net(kind, context_dim=CONTEXT_DIM))
    x = sample_x(kind, gen)
    ctx, mask = context_batch(gen)
    everywhere = torch.ones(3, dtype=torch.bool)
    null = net(x, C_NOISE, {"context": ctx, "context_mask": mask, "drop": everywhere})
    other = torch.randn(3, 7, CONTEXT_DIM, generator=gen)
    torch.testing.assert_close(net(x, C_NOISE, {"context": other, "drop": everywhere}), null)
    torch.testing.assert_close(net(x, C_NOISE, {"context": ctx, "context_mask": torch.zeros_like(mask)}), null)
    torch.testing.assert_close(net(x, C_NOISE), null)
    real = net(x, C_NOISE, {"context": ctx, "context_mask": mask})
    assert per_sample_gap(real, null).min() > 1e-4
    mixed = net(x, C_NOISE, {"context": ctx, "context_mask": mask, "drop": torch.tensor([False, True, False])})
    torch.testing.assert_close(mixed[[0, 2]], real[[0, 2]])
    torch.testing.assert_close(mixed[1], null[1])


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_masked_context_tokens_do_not_change_the_output(kind, gen, perturb, tiny_net):
    net = perturb(tiny_net(kind, context_dim=CONTEXT_DIM))
    x = sample_x(kind, gen)
    ctx, mask = context_batch(gen)
    real = net(x, C_NOISE, {"context": ctx, "context_mask": mask})
    garbage = torch.where(mask[..., None], ctx, 50 * torch.randn(ctx.shape, generator=gen))
    torch.testing.assert_close(net(x, C_NOISE, {"context": garbage, "context_mask": mask}), real)
    assert per_sample_gap(net(x, C_NOISE, {"context": garbage}), real)[:2].min() > 1e-4
    # Sample 1 sees two real tokens: the same as a context cut to them.
    torch.testing.assert_close(net(x[1:2], C_NOISE[1:2], {"context": ctx[1:2, :2]}), real[1:2], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_every_parameter_gets_a_gradient(kind, gen, perturb, tiny_net):
    kwargs = {"num_classes": NUM_CLASSES}
    cond = {"class_labels": torch.tensor([0, 3, 4]), "drop": torch.tensor([True, False, False])}
    if kind != "mlp":
        kwargs["context_dim"] = CONTEXT_DIM
        cond["context"], cond["context_mask"] = context_batch(gen)
    if kind == "dit":
        kwargs["pos_embed"] = "learned"
    net = perturb(tiny_net(kind, **kwargs))
    net(sample_x(kind, gen), C_NOISE, cond).square().mean().backward()
    starved = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert starved == []


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_channels_last_gives_the_same_output(kind, gen, perturb, tiny_net):
    net = perturb(tiny_net(kind, 3, 16, num_classes=NUM_CLASSES, context_dim=CONTEXT_DIM))
    x = sample_x(kind, gen, size=16)
    ctx, mask = context_batch(gen)
    cond = {"class_labels": torch.tensor([0, 3, 4]), "context": ctx, "context_mask": mask}
    ref = net(x, C_NOISE, cond)
    x_cl = x.to(memory_format=torch.channels_last)
    torch.testing.assert_close(net(x_cl, C_NOISE, cond), ref, atol=1e-5, rtol=1e-4)
    net.to(memory_format=torch.channels_last)
    torch.testing.assert_close(net(x_cl, C_NOISE, cond), ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_unconditional_network_rejects_conditions(kind, gen, tiny_net):
    net, x = tiny_net(kind), sample_x(kind, gen)
    with pytest.raises(DifflabError, match="num_classes="):
        net(x, C_NOISE, {"class_labels": torch.tensor([0, 1, 2])})
    with pytest.raises(DifflabError, match="use UNet or DiT" if kind == "mlp" else "build it with context_dim="):
        net(x, C_NOISE, {"context": torch.randn(3, 2, CONTEXT_DIM)})
    with pytest.raises(DifflabError, match=r"c_noise must have shape \(3,\)"):
        net(x, C_NOISE[:2])


def test_bad_input_shapes_name_the_fix(gen, tiny_net):
    with pytest.raises(DifflabError, match="use UNet or DiT"):
        tiny_net("mlp")(torch.randn(3, 1, 8, 8), C_NOISE)
    with pytest.raises(DifflabError, match="divisible by 2"):
        tiny_net("unet", 1)(torch.randn(3, 1, 7, 7), C_NOISE)
    with pytest.raises(DifflabError, match=r"\(B, 3, 8, 8\)"):
        tiny_net("dit", 3, 8)(torch.randn(3, 3, 16, 16), C_NOISE)
