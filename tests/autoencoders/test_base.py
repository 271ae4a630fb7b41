"""The Autoencoder contract: the latent scale is applied in to_latent/from_latent only, travels with
the weights, and measure_latent_scale is 1 / the pooled population std (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from difflab.autoencoders.base import Autoencoder, measure_latent_scale
from difflab.utils.errors import DifflabError


class Pool(Autoencoder):
    """A fixed linear autoencoder: encode = 2 * average pool by f, decode = nearest upsample / 2."""

    def __init__(self, f=2):
        super().__init__(factor=f, latent_channels=3)
        self.w = nn.Parameter(torch.ones(()))

    def encode(self, x):
        self.check_image_size(x)
        return 2 * self.w * nn.functional.avg_pool2d(x, self.factor)

    def decode(self, z):
        return nn.functional.interpolate(z / (2 * self.w), scale_factor=self.factor)


def test_scale_is_applied_in_to_latent_and_from_latent():
    ae = Pool()
    assert ae.latent_scale == 1.0 and ae.fingerprint == ""
    ae.set_latent_scale(0.25)
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(ae.to_latent(x), 0.25 * ae.encode(x))
    z = torch.randn(2, 3, 2, 2)
    torch.testing.assert_close(ae.from_latent(z), ae.decode(z / 0.25))


def test_scale_travels_with_the_state_dict():
    ae = Pool()
    ae.set_latent_scale(0.18215)
    other = Pool()
    other.load_state_dict(ae.state_dict())
    assert other.latent_scale == 0.18215  # float64 buffer: exact


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan")])
def test_bad_scale_is_one_message(bad):
    with pytest.raises(DifflabError, match="positive finite"):
        Pool().set_latent_scale(bad)


def test_measured_scale_is_one_over_pooled_population_std():
    g = torch.Generator().manual_seed(0)
    batches = [3.0 + 5.0 * torch.randn(n, 3, 4, 4, generator=g) for n in (1, 4, 7)]
    ae = Pool()
    z = np.concatenate([ae.encode(b).detach().double().numpy().ravel() for b in batches])
    expected = 1.0 / z.std()  # numpy's two-pass population std, computed independently
    assert measure_latent_scale(ae, batches) == pytest.approx(expected, rel=1e-12)
    # a large offset (mean 1e6, std 1) does not cancel catastrophically
    big = [1e6 + torch.randn(8, 3, 4, 4, generator=g, dtype=torch.float64) for _ in range(3)]
    zb = np.concatenate([ae.encode(b).detach().numpy().ravel() for b in big])
    assert measure_latent_scale(ae, big) == pytest.approx(1.0 / zb.std(), rel=1e-9)


def test_measure_errors_and_size_check():
    with pytest.raises(DifflabError, match="no data"):
        measure_latent_scale(Pool(), [])
    with pytest.raises(DifflabError, match="zero variance"):
        measure_latent_scale(Pool(), [torch.ones(2, 3, 4, 4)])
    with pytest.raises(DifflabError, match="multiple of 4"):
        Pool(4).encode(torch.zeros(1, 3, 6, 8))
