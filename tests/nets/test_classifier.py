"""NoisyClassifier and TimeClassifier: the logits contract, ADM's attention pooling, the time scale, bad input."""

from __future__ import annotations

import pytest
import torch

from difflab.nets import AttentionPool, NoisyClassifier, build_network
from difflab.param.classifier import TimeClassifier
from difflab.process import DiscreteVP
from difflab.utils import DifflabError


def tiny_classifier(pool: str = "attention", **kw) -> NoisyClassifier:
    args = dict(in_channels=1, num_classes=3, base_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                attention_resolutions=(4,), image_size=8, num_heads=2, pool=pool)
    return NoisyClassifier(**{**args, **kw})


@pytest.mark.parametrize("pool", ["mean", "attention"])
def test_logits_contract(pool, perturb):
    """(B, C, H, W), (B,) -> (B, num_classes); zero head = uniform at init; the logits read x and c_noise."""
    net = tiny_classifier(pool).eval()
    x, c = torch.randn(5, 1, 8, 8), torch.rand(5) * 1000
    assert torch.equal(net(x, c), torch.zeros(5, 3))
    perturb(net)
    logits = net(x, c)
    assert logits.shape == (5, 3) and logits.dtype == torch.float32 and torch.isfinite(logits).all()
    assert not torch.allclose(logits, net(x, c + 100), atol=1e-4)  # the noise level matters
    assert not torch.allclose(logits, net(x.flip(-1), c), atol=1e-4)  # the image matters
    assert torch.allclose(net(x, c[0]), net(x, c[0].expand(5)))  # a scalar c_noise broadcasts


@pytest.mark.parametrize("pool", ["mean", "attention"])
def test_each_image_is_classified_on_its_own(pool, perturb):
    """GroupNorm and the pooling act per image: a sample's logits do not depend on its batch mates."""
    net = perturb(tiny_classifier(pool)).eval()
    x, c = torch.randn(4, 1, 8, 8), torch.tensor([1.0, 250.0, 500.0, 999.0])
    together = net(x, c)
    alone = torch.cat([net(x[i : i + 1], c[i : i + 1]) for i in range(4)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_attention_pool_is_multihead_attention_from_the_mean_token():
    """AttentionPool = torch's MultiheadAttention with query z_0 = mean + p_0 over keys/values z_j + p_j."""
    torch.manual_seed(0)
    C, heads = 8, 2
    pool = AttentionPool(C, 4 * 4, heads)
    mha = torch.nn.MultiheadAttention(C, heads, batch_first=True)
    with torch.no_grad():
        k_w, v_w = pool.kv.weight.chunk(2)
        k_b, v_b = pool.kv.bias.chunk(2)
        mha.in_proj_weight.copy_(torch.cat([pool.q.weight, k_w, v_w]))
        mha.in_proj_bias.copy_(torch.cat([pool.q.bias, k_b, v_b]))
        mha.out_proj.weight.copy_(torch.eye(C))
        mha.out_proj.bias.zero_()
    h = torch.randn(3, C, 4, 4)
    tokens = h.flatten(2).transpose(1, 2)  # (B, 16, C)
    z = torch.cat([tokens.mean(1, keepdim=True), tokens], 1) + pool.pos  # (B, 17, C)
    expected, _ = mha(z[:, :1], z, z)
    assert torch.allclose(pool(h), expected[:, 0], atol=1e-5)


def test_mean_pool_takes_any_size_attention_pool_only_its_own(perturb):
    mean_net, attn_net = tiny_classifier("mean"), tiny_classifier("attention")
    x = torch.randn(2, 1, 16, 12)
    assert mean_net(x, torch.zeros(2)).shape == (2, 3)
    with pytest.raises(DifflabError, match="built for 8x8 images.*pool='mean'"):
        attn_net(x, torch.zeros(2))


def test_bad_input_messages():
    net = tiny_classifier()
    with pytest.raises(DifflabError, match=r"takes x of shape \(B, 1, H, W\) with H and W divisible by 2"):
        net(torch.randn(2, 3, 8, 8), torch.zeros(2))
    with pytest.raises(DifflabError, match="divisible by 2"):
        net(torch.randn(2, 1, 7, 7), torch.zeros(2))
    with pytest.raises(DifflabError, match="not conditioned on one: call it with cond=None"):
        net(torch.randn(2, 1, 8, 8), torch.zeros(2), {"class_labels": torch.tensor([0, 1])})
    with pytest.raises(DifflabError, match=r"c_noise must have shape \(2,\)"):
        net(torch.randn(2, 1, 8, 8), torch.zeros(3))
    with pytest.raises(DifflabError, match="valid poolings are: attention, mean"):
        tiny_classifier("max")
    with pytest.raises(DifflabError, match="num_classes >= 2"):
        tiny_classifier(num_classes=1)
    with pytest.raises(DifflabError, match="attention resolution 3 .* valid resolutions are: \\[8, 4\\]"):
        tiny_classifier(attention_resolutions=(3,))


def test_registry_builds_the_classifier():
    net = build_network("classifier", in_channels=1, num_classes=10, base_channels=8, channel_mult=(1,),
                        attention_resolutions=(), image_size=8, num_heads=2)
    assert isinstance(net, NoisyClassifier) and net.head.out_features == 10


class Recorder(torch.nn.Module):
    num_classes = 2

    def forward(self, x, c_noise, cond=None):
        self.c_noise = c_noise
        return torch.stack([x.flatten(1).sum(1), -x.flatten(1).sum(1)], dim=1)


def test_time_classifier_feeds_time_scale_t():
    """classifier(x_t, t) = net(x_t, 1000 t); a scalar t is broadcast; the process and classes are exposed."""
    process = DiscreteVP()
    clf = TimeClassifier(Recorder(), process)
    x = torch.randn(3, 1, 4, 4)
    logits = clf(x, torch.tensor([0.1, 0.5, 1.0], dtype=torch.float64))
    assert torch.allclose(clf.net.c_noise, torch.tensor([100.0, 500.0, 1000.0]))
    assert clf.net.c_noise.dtype == x.dtype and logits.shape == (3, 2)
    clf(x, 0.25)
    assert torch.allclose(clf.net.c_noise, torch.full((3,), 250.0))
    assert clf.process is process and clf.num_classes == 2
    unscaled = TimeClassifier(Recorder(), process, time_scale=1.0)
    unscaled(x, 0.25)
    assert torch.allclose(unscaled.net.c_noise, torch.full((3,), 0.25))
    assert tiny_classifier().num_classes == TimeClassifier(tiny_classifier(), process).num_classes == 3
