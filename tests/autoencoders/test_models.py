"""KL-VAE and VQ-VAE trunks: shapes and factor for f = 1, 2, 4, 8; the diagonal Gaussian's KL against
torch.distributions (float64) and its reparameterized samples' moments; one message per bad option."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from difflab.autoencoders.kl import DiagonalGaussian, KLAutoencoder
from difflab.autoencoders.vq import VQAutoencoder
from difflab.utils.errors import DifflabError

MULTS = {1: (1,), 2: (1, 2), 4: (1, 2, 2), 8: (1, 1, 2, 2)}


@pytest.mark.parametrize("f", [1, 2, 4, 8])
@pytest.mark.parametrize("kind", ["kl", "vq"])
def test_shapes_and_factor(f, kind):
    torch.manual_seed(0)
    cls = KLAutoencoder if kind == "kl" else VQAutoencoder
    extra = {"num_codes": 16} if kind == "vq" else {}
    ae = cls(in_channels=3, base_channels=8, channel_mult=MULTS[f], num_res_blocks=1, latent_channels=3,
             attention=f == 4, **extra)
    x = torch.rand(2, 3, 16, 24) * 2 - 1
    assert ae.factor == f and ae.latent_channels == 3
    z = ae.encode(x)
    assert z.shape == (2, 3, 16 // f, 24 // f)
    assert ae.decode(z).shape == x.shape
    x_hat, reg, stats = ae.reconstruct(x, torch.Generator().manual_seed(0))
    assert x_hat.shape == x.shape and all(v.shape == (2,) for v in reg.values())
    if kind == "vq":
        idx = ae.encode_indices(x)
        assert idx.shape == (2, 16 // f, 24 // f) and idx.dtype == torch.long
        torch.testing.assert_close(ae.decode_indices(idx), ae.decode(z))
        assert set(stats) == {"code_usage", "perplexity"}
    else:
        torch.testing.assert_close(z, ae.posterior(x).mean)


def test_kl_matches_torch_distributions_float64():
    g = torch.Generator().manual_seed(1)
    mean = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64)
    logvar = 2 * torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64)
    expected = kl_divergence(Normal(mean, (0.5 * logvar).exp()), Normal(0.0, 1.0)).flatten(1).sum(1)
    torch.testing.assert_close(DiagonalGaussian(mean, logvar).kl(), expected, rtol=1e-12, atol=1e-12)
    zero = DiagonalGaussian(torch.zeros(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)).kl()
    assert torch.equal(zero, torch.zeros(2))  # q = prior


def test_logvar_is_clamped():
    q = DiagonalGaussian(torch.zeros(1, 1, 1, 2), torch.tensor([[[[-100.0, 100.0]]]]))
    assert q.logvar.flatten().tolist() == [-30.0, 20.0]


def test_reparameterized_samples_have_the_posterior_moments():
    n, mu, logvar = 200_000, torch.tensor([1.5, -0.5]), torch.tensor([0.0, math.log(0.25)])
    mean = mu[None, :, None, None].double().expand(n, 2, 1, 1)
    q = DiagonalGaussian(mean, logvar[None, :, None, None].double().expand(n, 2, 1, 1))
    z = q.sample(torch.Generator().manual_seed(3)).reshape(n, 2)
    var = logvar.double().exp()
    se_mean = (var / n).sqrt()
    se_var = var * math.sqrt(2 / (n - 1))
    assert ((z.mean(0) - mu.double()).abs() < 4 * se_mean).all()
    assert ((z.var(0) - var).abs() < 4 * se_var).all()
    again = q.sample(torch.Generator().manual_seed(3)).reshape(n, 2)
    assert torch.equal(z, again)


def test_sample_is_differentiable_in_mean_and_logvar():
    mean = torch.zeros(1, 1, 1, 1, requires_grad=True)
    logvar = torch.zeros(1, 1, 1, 1, requires_grad=True)
    z = DiagonalGaussian(mean, logvar).sample(torch.Generator().manual_seed(0))
    z.sum().backward()
    eps = z.detach()  # mean 0, std 1: z = eps
    assert mean.grad.item() == 1.0 and logvar.grad.item() == pytest.approx(0.5 * eps.item())


@pytest.mark.parametrize(("options", "message"), [
    ({"channel_mult": (1, 2, 2, 2, 2)}, "factor f = 1, 2, 4 or 8"),
    ({"channel_mult": ()}, "factor f = 1, 2, 4 or 8"),
    ({"latent_channels": 0}, "latent_channels must be a positive integer"),
    ({"channel_mult": (1, 0)}, "channel_mult entries"),
])
def test_bad_options_are_one_message(options, message):
    with pytest.raises(DifflabError, match=message):
        KLAutoencoder(**{"base_channels": 8, **options})


def test_image_size_not_divisible_by_f_is_one_message():
    ae = KLAutoencoder(base_channels=8, channel_mult=(1, 2, 2))
    with pytest.raises(DifflabError, match="multiple of 4"):
        ae.encode(torch.zeros(1, 3, 18, 16))
