"""Reconstruction metrics against closed forms: PSNR of a known error, SSIM of constant images, the
Laplacian of a checkerboard, Parseval for the spectrum split, perplexity of known histograms."""

from __future__ import annotations

import math

import pytest
import torch

from difflab.metrics.reconstruction import (
    ReconstructionStats,
    code_statistics,
    fft_high_energy,
    high_frequency_mask,
    laplacian_energy,
    psnr,
    ssim,
)
from difflab.utils.errors import DifflabError


def _images(n=4, c=3, s=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, s, s, generator=g, dtype=torch.float64) * 1.6 - 0.8


def test_psnr_of_a_constant_error_is_the_closed_form():
    x = _images()
    for delta in (0.1, 0.02):
        assert psnr(x + delta, x) == pytest.approx(10 * math.log10(4 / delta**2), abs=1e-9)
    assert psnr(x, x) == math.inf


def test_streamed_psnr_pools_the_squared_error_of_every_batch():
    x = _images(6)
    y = x.clone()
    y[:3] += 0.1  # half the images off by 0.1, the other half exact: MSE = 0.01 / 2
    stats = ReconstructionStats()
    for i in range(0, 6, 2):
        stats.add(y[i:i + 2], x[i:i + 2])
    r = stats.results()
    assert r["mse"] == pytest.approx(0.005, rel=1e-9)
    assert r["psnr"] == pytest.approx(10 * math.log10(4 / 0.005), abs=1e-9)
    assert r["n"] == 6


def test_ssim_of_constant_images_is_the_luminance_term():
    # constant images: variances and covariance vanish, so SSIM = (2ab + C1) / (a^2 + b^2 + C1), C1 = (0.01 R)^2
    a, b = 0.3, -0.2
    x = torch.full((2, 3, 16, 16), a, dtype=torch.float64)
    y = torch.full((2, 3, 16, 16), b, dtype=torch.float64)
    c1 = (0.01 * 2.0) ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert torch.allclose(ssim(x, y), torch.full((2,), expected, dtype=torch.float64), atol=1e-9)
    noisy = _images()
    assert torch.allclose(ssim(noisy, noisy), torch.ones(4, dtype=torch.float64), atol=1e-9)
    assert float(ssim(noisy + 0.3 * _images(seed=1), noisy).max()) < 0.95


def test_laplacian_energy_of_a_checkerboard_and_a_ramp():
    s = 8
    i = torch.arange(s)
    board = ((i[:, None] + i[None, :]) % 2).double() * 2 - 1  # +-1; each interior Laplacian is -+8
    x = board.expand(1, 1, s, s)
    assert float(laplacian_energy(x)) == pytest.approx(64 * (s - 2) ** 2)
    ramp = (i[:, None] + 2.0 * i[None, :]).double().expand(1, 1, s, s)  # linear: Laplacian 0
    assert float(laplacian_energy(ramp)) == pytest.approx(0.0, abs=1e-12)


def test_the_spectrum_split_keeps_high_waves_and_drops_low_ones():
    s = 16
    n = torch.arange(s, dtype=torch.float64)
    high = torch.cos(2 * math.pi * 6 / s * n)[None, :].expand(s, s)[None, None]  # f_x = 0.375 > 1/4
    low = torch.cos(2 * math.pi * 2 / s * n)[None, :].expand(s, s)[None, None]  # f_x = 0.125
    # Parseval: sum |F x|^2 = H W sum x^2, all of it in the high bins for the fast wave, none for the slow one
    assert float(fft_high_energy(high)) == pytest.approx(s * s * float(high.square().sum()), rel=1e-9)
    assert float(fft_high_energy(low)) == pytest.approx(0.0, abs=1e-6)
    assert float(fft_high_energy(high + low)) == pytest.approx(float(fft_high_energy(high)), rel=1e-9)
    assert high_frequency_mask(8, 8).sum() == 8 * 8 - 5 * 5  # low per axis: |f| in {0, 1/8, 1/4}, 5 of 8 bins


def test_hf_ratios_scale_quadratically_and_a_blur_lowers_them():
    x = _images(3, s=16)
    stats = ReconstructionStats()
    stats.add(0.5 * x, x)
    r = stats.results()
    assert r["hf_ratio_laplacian"] == pytest.approx(0.25, rel=1e-9)
    assert r["hf_ratio_fft"] == pytest.approx(0.25, rel=1e-9)
    blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    stats = ReconstructionStats()
    stats.add(blurred, x)
    r = stats.results()
    assert 0 < r["hf_ratio_laplacian"] < 0.3 and 0 < r["hf_ratio_fft"] < 0.3


def test_code_usage_and_perplexity_of_known_histograms():
    assert code_statistics(torch.full((8,), 5.0)) == pytest.approx((1.0, 8.0))
    assert code_statistics(torch.tensor([0.0, 7.0, 0.0, 0.0])) == pytest.approx((0.25, 1.0))
    usage, perplexity = code_statistics(torch.tensor([1.0, 1.0, 2.0, 0.0]))
    p = torch.tensor([0.25, 0.25, 0.5], dtype=torch.float64)
    assert usage == 0.75 and perplexity == pytest.approx(math.exp(float(-(p * p.log()).sum())))
    stats = ReconstructionStats(num_codes=4)
    x = _images(2)
    stats.add(x, x)
    stats.add_codes(torch.tensor([[0, 1], [1, 2]]))
    stats.add_codes(torch.tensor([2, 2]))
    r = stats.results()
    entropy = -sum(q * math.log(q) for q in (1 / 6, 2 / 6, 3 / 6))  # counts 1, 2, 3, 0
    assert r["code_usage"] == 0.75 and r["perplexity"] == pytest.approx(math.exp(entropy))


def test_bad_input_is_one_clear_message():
    x = _images()
    with pytest.raises(DifflabError, match="one shape"):
        psnr(x[:, :, :8], x)
    with pytest.raises(DifflabError, match="at least 11x11"):
        ssim(x[..., :8, :8], x[..., :8, :8])
    with pytest.raises(DifflabError, match="empty"):
        ReconstructionStats().results()
    with pytest.raises(DifflabError, match="empty"):
        code_statistics(torch.zeros(3))
