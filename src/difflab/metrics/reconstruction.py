"""How well an autoencoder gives its input back: PSNR, SSIM, high-frequency energy, codebook statistics.

All statistics accumulate in float64 over a stream of (input, output) batches (`ReconstructionStats`), so
a figure does not depend on the batch size. Images are (B, C, H, W) in a known data range (difflab's
[-1, 1]: data_range = 2); outputs are clamped to it first, as a saved picture would be.

* PSNR (peak signal-to-noise ratio) of the whole set: 10 log10(R^2 / MSE), MSE the mean squared error
  over every pixel and channel of the set, R the data range (what torchmetrics' PeakSignalNoiseRatio
  computes when updated batch by batch). Exact reconstructions give inf.
* SSIM (Wang et al. 2004): torchmetrics' structural_similarity_index_measure per image (11x11 Gaussian
  window, sigma 1.5, k1 = 0.01, k2 = 0.03, constants C_i = (k_i R)^2), averaged over images.
* High-frequency energy ratio (the sharpness a discriminator buys, seed 003 "latent VAE with
  discriminator"): E_hf(output) / E_hf(input) summed over the set, with two measures of E_hf:
  - laplacian: sum of (Delta x)^2 over the interior pixels, Delta the 5-point Laplacian
    x[i-1,j] + x[i+1,j] + x[i,j-1] + x[i,j+1] - 4 x[i,j];
  - fft: sum of |F x|^2 over the top half of the spectrum, the frequencies (f_y, f_x) (cycles per pixel,
    in [-1/2, 1/2)) with max(|f_y|, |f_x|) > 1/4, F the unnormalized 2-D DFT of each channel.
  A blurred reconstruction has ratios below 1; 1 means as much fine detail (or noise) as the input.
* Codebook usage and perplexity (van den Oord et al. 2017; Esser et al. 2021): of the code histogram
  n_k over every latent position of the set, usage = #{k : n_k > 0} / K and perplexity = exp(H(p)),
  p_k = n_k / sum n, H(p) = -sum p_k log p_k (K for uniform use, 1 for a single code).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from difflab.utils.errors import DifflabError

DATA_RANGE = 2.0  # images in [-1, 1]
HIGH_FREQUENCY = 0.25  # |f| > 1/4 cycles per pixel: the top half of each axis' band [0, 1/2]


def _check_pair(output: Tensor, target: Tensor) -> None:
    if output.shape != target.shape or output.ndim != 4:
        raise DifflabError(f"reconstructions and inputs must be image batches (B, C, H, W) of one shape; got "
                           f"{tuple(output.shape)} and {tuple(target.shape)}")


def squared_error(output: Tensor, target: Tensor) -> Tensor:
    """Per-image sum of squared differences (B,), float64."""
    _check_pair(output, target)
    return (output.double() - target.double()).square().flatten(1).sum(1)


def psnr_from_mse(mse: float, data_range: float = DATA_RANGE) -> float:
    """10 log10(R^2 / MSE) in dB (inf for MSE 0)."""
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def psnr(output: Tensor, target: Tensor, data_range: float = DATA_RANGE) -> float:
    """PSNR of a batch as one set: 10 log10(R^2 / MSE), MSE over every element (float64)."""
    _check_pair(output, target)
    return psnr_from_mse(float(squared_error(output, target).sum()) / target.numel(), data_range)


def ssim(output: Tensor, target: Tensor, data_range: float = DATA_RANGE) -> Tensor:
    """Per-image SSIM (B,) float64 by torchmetrics (11x11 Gaussian window, sigma 1.5; Wang et al. 2004)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    _check_pair(output, target)
    if min(target.shape[-2:]) < 11:
        raise DifflabError(f"SSIM's 11x11 window needs images of at least 11x11 pixels; got {tuple(target.shape[-2:])}")
    return structural_similarity_index_measure(output.double(), target.double(), data_range=data_range,
                                               reduction="none")


def laplacian_energy(x: Tensor) -> Tensor:
    """Per-image sum over channels and interior pixels of the squared 5-point Laplacian (B,), float64."""
    x = x.double()
    lap = (x[..., :-2, 1:-1] + x[..., 2:, 1:-1] + x[..., 1:-1, :-2] + x[..., 1:-1, 2:]
           - 4 * x[..., 1:-1, 1:-1])  # (B, C, H-2, W-2)
    return lap.square().flatten(1).sum(1)


def high_frequency_mask(h: int, w: int) -> Tensor:
    """(H, W) bool: the DFT bins with max(|f_y|, |f_x|) > 1/4 cycles per pixel (torch.fft.fftfreq order)."""
    fy, fx = torch.fft.fftfreq(h, dtype=torch.float64).abs(), torch.fft.fftfreq(w, dtype=torch.float64).abs()
    return torch.maximum(fy[:, None], fx[None, :]) > HIGH_FREQUENCY


def fft_high_energy(x: Tensor) -> Tensor:
    """Per-image spectral energy sum |F x|^2 of the high-frequency bins, summed over channels (B,), float64."""
    spectrum = torch.fft.fft2(x.double()).abs().square()  # (B, C, H, W)
    mask = high_frequency_mask(*x.shape[-2:])
    return (spectrum * mask).flatten(1).sum(1)


def code_statistics(counts: Tensor) -> tuple[float, float]:
    """(usage, perplexity) of a code histogram counts (K,): used fraction of the K codes and exp(H(p))."""
    counts = counts.double()
    total = float(counts.sum())
    if total <= 0:
        raise DifflabError("the code histogram is empty: no latent positions were counted")
    p = counts[counts > 0] / total
    return float((counts > 0).sum()) / len(counts), math.exp(float(-(p * p.log()).sum()))


class ReconstructionStats:
    """Streaming float64 sums of (input, output) batches -> results(): PSNR, SSIM, the two high-frequency
    energy ratios and, when codes were added (`add_codes`), codebook usage and perplexity."""

    def __init__(self, data_range: float = DATA_RANGE, num_codes: int | None = None):
        self.data_range = data_range
        self.n_images = 0
        self.n_values = 0
        self.sse = 0.0
        self.ssim_sum = 0.0
        self.energy = {"laplacian": [0.0, 0.0], "fft": [0.0, 0.0]}  # [output, input]
        self.codes = None if num_codes is None else torch.zeros(num_codes, dtype=torch.float64)

    def add(self, output: Tensor, target: Tensor) -> None:
        """One batch: target the inputs, output their reconstructions (clamped to the data range here)."""
        _check_pair(output, target)
        lo = -self.data_range / 2
        output = output.detach().double().clamp(lo, lo + self.data_range).cpu()
        target = target.detach().double().cpu()
        self.n_images += len(target)
        self.n_values += target.numel()
        self.sse += float(squared_error(output, target).sum())
        self.ssim_sum += float(ssim(output, target, self.data_range).sum())
        for name, energy in (("laplacian", laplacian_energy), ("fft", fft_high_energy)):
            self.energy[name][0] += float(energy(output).sum())
            self.energy[name][1] += float(energy(target).sum())

    def add_codes(self, indices: Tensor) -> None:
        """The code indices (any shape) a VQ autoencoder chose for a batch."""
        if self.codes is None:
            raise DifflabError("ReconstructionStats was built without num_codes: codes cannot be counted")
        self.codes += torch.bincount(indices.detach().flatten().cpu(), minlength=len(self.codes)).double()

    def results(self) -> dict[str, float]:
        if self.n_images == 0:
            raise DifflabError("no images were reconstructed: the evaluation set is empty")
        out = {"psnr": psnr_from_mse(self.sse / self.n_values, self.data_range), "ssim": self.ssim_sum / self.n_images,
               "mse": self.sse / self.n_values}
        for name, (e_out, e_in) in self.energy.items():
            out[f"hf_ratio_{name}"] = e_out / e_in if e_in > 0 else math.nan
        if self.codes is not None:
            out["code_usage"], out["perplexity"] = code_statistics(self.codes)
        out["n"] = self.n_images
        return out
