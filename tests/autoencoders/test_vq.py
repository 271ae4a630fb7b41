"""The vector quantizer: nearest codes against a brute-force loop, the straight-through gradient, the
codebook and commitment losses, the EMA update against a hand computation, dead-code restart, and
the code usage / perplexity statistics."""

from __future__ import annotations

import math

import pytest
import torch

from difflab.autoencoders.vq import VectorQuantizer, code_statistics
from difflab.utils.errors import DifflabError


def _quantizer(codes, **kw) -> VectorQuantizer:
    codes = torch.as_tensor(codes, dtype=torch.float32)
    vq = VectorQuantizer(codes.shape[0], codes.shape[1], **kw)
    with torch.no_grad():
        vq.codebook.copy_(codes)
        if vq.ema:
            vq.embed_sum.copy_(codes)
    return vq


def test_nearest_code_matches_a_brute_force_loop():
    g = torch.Generator().manual_seed(0)
    codes, z = torch.randn(7, 3, generator=g), torch.randn(40, 3, generator=g)
    expected = []
    for zi in z.double().tolist():
        d = [sum((a - b) ** 2 for a, b in zip(zi, e, strict=True)) for e in codes.double().tolist()]
        expected.append(min(range(len(d)), key=d.__getitem__))
    vq = _quantizer(codes)
    assert vq.nearest(z).tolist() == expected
    zz = z.reshape(2, 4, 5, 3).permute(0, 3, 1, 2)  # (B, dim, h, w): rows in (b, y, x) order
    assert vq.indices(zz).flatten().tolist() == expected
    q, _, _ = vq(zz)
    torch.testing.assert_close(q.permute(0, 2, 3, 1).reshape(40, 3), codes[expected])


def test_straight_through_gradient_is_the_gradient_at_the_codes():
    """d/dz L(dec(z + sg[q - z])) = dL/dq evaluated at the codes q (van den Oord et al. §3.2)."""
    g = torch.Generator().manual_seed(1)
    vq = _quantizer(torch.randn(5, 2, generator=g))
    dec = torch.nn.Conv2d(2, 3, 3, padding=1)
    z = torch.randn(2, 2, 3, 3, generator=g, requires_grad=True)
    q_st, _, _ = vq(z)
    dec(q_st).square().sum().backward()
    q = vq.lookup(vq.indices(z)).detach().requires_grad_(True)
    dec(q).square().sum().backward()
    torch.testing.assert_close(z.grad, q.grad)
    assert not torch.equal(z.detach(), q.detach())


def test_codebook_and_commitment_losses_and_their_gradients():
    vq = _quantizer([[0.0, 0.0], [2.0, 2.0]], beta=0.25)
    z = torch.tensor([[0.5, 0.0], [-0.5, 3.0]]).reshape(1, 2, 1, 2).requires_grad_(True)  # vectors (.5,-.5), (0,3)
    _, losses, _ = vq(z)
    # (0.5, -0.5) -> e_0: ||.||^2 = 0.5;  (0, 3) -> e_1 = (2, 2): 4 + 1 = 5;  mean over 4 latent elements
    sq = (0.5 + 5.0) / 4
    assert losses["codebook"].item() == pytest.approx(sq)
    assert losses["commitment"].item() == pytest.approx(0.25 * sq)
    losses["codebook"].sum().backward()
    assert z.grad is None or torch.all(z.grad == 0)  # sg[z]: the codebook loss moves the codes only
    assert vq.codebook.grad is not None and vq.codebook.grad.abs().sum() > 0


def test_ema_update_against_a_hand_computation_on_three_codes():
    d, eps = 0.5, 1e-5
    vq = _quantizer([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], ema=True, decay=d, eps=eps)
    assert not vq.codebook.requires_grad
    z_rows = torch.tensor([[1.0, 1.0], [-1.0, 0.0], [9.0, 1.0]])  # codes 0, 0, 1; code 2 unused
    z = z_rows.T.reshape(1, 2, 1, 3)
    _, losses, _ = vq(z, update=True)
    assert torch.equal(losses["codebook"], torch.zeros(1))  # EMA codebooks have no codebook loss
    n_k = [2.0, 1.0, 0.0]
    s_k = [[0.0, 1.0], [9.0, 1.0], [0.0, 0.0]]
    m0 = [[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]
    N = [d * 1.0 + (1 - d) * n for n in n_k]  # N_k = d * 1 + (1 - d) n_k (N_k starts at 1)
    m = [[d * a + (1 - d) * b for a, b in zip(m0[k], s_k[k], strict=True)] for k in range(3)]
    total = sum(N)
    smooth = [(N[k] + eps) / (total + 3 * eps) * total for k in range(3)]
    expected = [[m[k][j] / smooth[k] for j in range(2)] for k in range(3)]
    torch.testing.assert_close(vq.cluster_size, torch.tensor(N))
    torch.testing.assert_close(vq.embed_sum, torch.tensor(m))
    torch.testing.assert_close(vq.codebook.detach(), torch.tensor(expected), rtol=1e-6, atol=1e-6)
    assert vq.codebook[2].tolist() == pytest.approx([0.0, 10.0 * d / smooth[2]])  # unused: near e_2
    before = vq.codebook.detach().clone()
    vq(z)  # update=False (evaluation): nothing moves
    assert torch.equal(vq.codebook.detach(), before)


@pytest.mark.parametrize("ema", [False, True])
def test_dead_code_restart_revives_an_unused_code_deterministically(ema):
    codes = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [100.0, 100.0]]  # code 3 is never nearest
    g = torch.Generator().manual_seed(5)
    z_rows = torch.rand(12, 2, generator=g)
    z = z_rows.T.reshape(1, 2, 3, 4)
    rows = z.permute(0, 2, 3, 1).reshape(-1, 2)

    def run(seed):
        vq = _quantizer(codes, restart_after=2, ema=ema, decay=0.9)
        gen = torch.Generator().manual_seed(seed)
        vq(z, gen, update=True)
        assert vq.steps_unused[3].item() == 1 and vq.codebook[3, 0].item() == pytest.approx(100.0, rel=1e-4)  # not yet
        draws = torch.Generator().manual_seed(seed)
        torch.randint(0, 12, (4,), generator=draws)  # the first update's draws
        picked = torch.randint(0, 12, (4,), generator=draws)[3]
        vq(z, gen, update=True)
        return vq, rows[picked]

    vq, expected = run(7)
    torch.testing.assert_close(vq.codebook.detach()[3], expected)
    assert vq.steps_unused[3].item() == 0
    if ema:
        torch.testing.assert_close(vq.embed_sum[3], expected)
        assert vq.cluster_size[3].item() == 1.0
    again, _ = run(7)
    assert torch.equal(again.codebook.detach(), vq.codebook.detach())


def test_perplexity_and_usage():
    uniform = code_statistics(torch.tensor([3, 3, 3, 3]))
    assert uniform["perplexity"].item() == pytest.approx(4.0) and uniform["code_usage"].item() == 1.0
    one = code_statistics(torch.tensor([0, 9, 0, 0]))
    assert one["perplexity"].item() == pytest.approx(1.0) and one["code_usage"].item() == 0.25
    mixed = code_statistics(torch.tensor([1, 1, 2, 0]))
    assert mixed["perplexity"].item() == pytest.approx(2 ** 1.5) and mixed["code_usage"].item() == 0.75
    vq = _quantizer([[0.0], [1.0], [2.0]])
    _, _, stats = vq(torch.tensor([0.1, 0.9, 2.2, 1.8]).reshape(1, 1, 2, 2))
    assert stats["perplexity"].item() == pytest.approx(math.exp(-(0.25 * math.log(0.25) * 2 + 0.5 * math.log(0.5))))


@pytest.mark.parametrize(("kw", "message"), [
    ({"num_codes": 1}, "num_codes"), ({"decay": 1.0}, "decay"), ({"restart_after": -1}, "restart_after"),
    ({"beta": -0.1}, "beta"),
])
def test_bad_quantizer_options(kw, message):
    with pytest.raises(DifflabError, match=message):
        VectorQuantizer(**{"num_codes": 4, "dim": 2, **kw})


def test_wrong_latent_shape_is_one_message():
    with pytest.raises(DifflabError, match=r"\(B, 2, h, w\)"):
        VectorQuantizer(4, 2)(torch.zeros(1, 3, 2, 2))
