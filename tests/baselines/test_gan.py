"""DC-GAN: the R1 penalty against hand-computed gradients, the non-saturating losses, the models'
contract, and the two-optimizer objective resuming bit-exactly through the trainer."""

from __future__ import annotations

import math

import pytest
import torch

from difflab.baselines.gan import DCGAN, discriminator_loss, generator_loss, r1_penalty
from difflab.train import TensorBatchDataset
from difflab.utils.errors import DifflabError

from .helpers import assert_same_weights, level_data, train_and_resume

f64 = torch.float64


def test_r1_penalty_matches_hand_computed_gradients():
    """Linear D(x) = w.x + b: ||grad||^2 = ||w||^2 for every image and d/dw (gamma/2 ||w||^2) = gamma w;
    quadratic D(x) = x^T A x: per image ||(A + A^T) x||^2."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 1, 2, 2, generator=g, dtype=f64, requires_grad=True)
    w = torch.randn(4, generator=g, dtype=f64, requires_grad=True)
    d = x.flatten(1) @ w + 0.3
    pen = r1_penalty(d, x)
    assert torch.allclose(pen, w.detach().square().sum().expand(5), rtol=1e-12)
    gamma = 10.0
    (grad_w,) = torch.autograd.grad(0.5 * gamma * pen.mean(), w)
    assert torch.allclose(grad_w, gamma * w.detach(), rtol=1e-12)

    A = torch.randn(4, 4, generator=g, dtype=f64)
    xf = x.detach().flatten(1).requires_grad_(True)
    pen = r1_penalty(((xf @ A) * xf).sum(1), xf)
    assert torch.allclose(pen, (xf.detach() @ (A + A.T)).square().sum(1), rtol=1e-12)


def test_the_non_saturating_losses():
    """L_D = -log sigma(D(x)) - log(1 - sigma(D(G(z)))) and L_G = -log sigma(D(G(z))) as written, and
    L_G's gradient stays near -1 where D rejects the fakes (logit -10), where log(1 - sigma) saturates."""
    d_real, d_fake = torch.tensor([2.0, -1.0, 0.0], dtype=f64), torch.tensor([-3.0, 0.5, 0.0], dtype=f64)
    s = torch.sigmoid
    assert torch.allclose(discriminator_loss(d_real, d_fake), -s(d_real).log() - (1 - s(d_fake)).log(), rtol=1e-12)
    assert torch.allclose(generator_loss(d_fake), -s(d_fake).log(), rtol=1e-12)
    assert discriminator_loss(d_real[2:], d_fake[2:]).item() == pytest.approx(2 * math.log(2), rel=1e-12)
    z = torch.tensor(-10.0, dtype=f64, requires_grad=True)
    (g_ns,) = torch.autograd.grad(generator_loss(z), z)
    (g_sat,) = torch.autograd.grad(torch.log(1 - torch.sigmoid(z)), z)  # the minimax generator's loss
    assert g_ns.item() == pytest.approx(-1, abs=1e-4) and abs(g_sat.item()) < 1e-4


def test_generator_discriminator_shapes_sampling_and_no_likelihood():
    torch.manual_seed(0)
    gan = DCGAN((1, 8, 8), 17, latent_dim=4, width=4, d_width=4)
    assert (gan.family, gan.has_likelihood, gan.nfe_per_sample) == ("gan", False, 1)
    x = gan.sample(5, generator=torch.Generator().manual_seed(1), device="cpu")
    assert x.shape == (5, 1, 8, 8) and x.abs().max() <= 1 and gan.training  # mode restored
    assert torch.equal(x, gan.sample(5, generator=torch.Generator().manual_seed(1), device="cpu"))
    assert gan.make_discriminator()(x).shape == (5,)
    toy = DCGAN((2,), None, latent_dim=2, width=8, d_width=8)
    assert toy.sample(7, generator=torch.Generator().manual_seed(0)).shape == (7, 2)
    with pytest.raises(DifflabError, match="a GAN defines no likelihood"):
        gan.log_likelihood(x)
    with pytest.raises(DifflabError, match="must divide by 2"):
        DCGAN((1, 6, 6), 17, upsample=2)


@pytest.mark.parametrize("family_data", ["images", "vectors"])
def test_the_objective_resumes_bit_exactly(tmp_path, family_data):
    """R1 on, two critic steps per generator step, two accumulated micro-batches (images): stopped at
    step 2 and resumed (from a generator built with another seed), generator, EMA, discriminator and
    losses equal the straight run's; the discriminator trained, and its initialization is the run
    seed's, not the global RNG's."""
    if family_data == "images":
        data, options, levels, accum = level_data(), dict(latent_dim=4, width=4, d_width=4), 5, 2
    else:
        data = TensorBatchDataset(torch.randn(48, 2, generator=torch.Generator().manual_seed(0)))
        options, levels, accum = dict(latent_dim=2, width=8, d_width=8), None, 1
    straight, resumed, loss_a, loss_b = train_and_resume(tmp_path, "gan", data, levels=levels, r1_gamma=1.0,
                                                         n_critic=2, grad_accum=accum, **options)
    assert_same_weights(resumed.model, straight.model)
    assert_same_weights(resumed.ema.module, straight.ema.module)
    assert_same_weights(resumed.objective.discriminator, straight.objective.discriminator)
    assert loss_a == loss_b and len(loss_a) == 4
    torch.manual_seed(123)  # another global RNG position: the same discriminator at initialization
    fresh = type(straight.objective)(DCGAN(tuple(data.x.shape[1:]), levels, **options, r1_gamma=1.0, n_critic=2), None,
                                     straight.config, straight.accelerator)
    torch.manual_seed(0)
    again = type(straight.objective)(DCGAN(tuple(data.x.shape[1:]), levels, **options, r1_gamma=1.0, n_critic=2), None,
                                     straight.config, straight.accelerator)
    assert_same_weights(fresh.discriminator, again.discriminator)
    trained = straight.objective.discriminator.state_dict()
    assert any(not torch.equal(v, trained[k]) for k, v in fresh.discriminator.state_dict().items())
