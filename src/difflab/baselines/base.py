"""The contract every non-diffusion baseline keeps, and the data convention for discrete levels.

A baseline (VAE, DC-GAN, PixelCNN; seeds 000, 002, 003) is an `nn.Module` the shared trainer trains
through its objective (difflab.baselines.registry names both), and that `sample` / `eval` use through
two methods:

    sample(n, *, generator | seeds, device, labels=None)  -> (n, *data_shape) images in the data range [-1, 1]
        (subclasses implement draw(n, draws, device, labels), taking every random number from `draws`, so
        with per-sample seeds a sample does not depend on its batch)
    log_likelihood(x, *, generator=None, k=None, labels=None) -> (B,) float64 log P(x) in nats per image

log P is the probability of the DISCRETE data: images with L levels, level j at x = -1 + j Delta,
Delta = 2 / (L - 1) (digits: L = 17 levels 0..16; 8-bit images: L = 256), the convention of
difflab.likelihood.result, so bits/dim = -log P / (D ln 2) compares with the diffusion models'
dequantized bits/dim directly. A VAE's is a lower bound (ELBO, or IWAE with k samples), a PixelCNN's is
exact, a GAN has none (has_likelihood False; its log_likelihood raises one DifflabError saying so).

`nfe_per_sample` counts network evaluations per sample (a PixelCNN needs one per pixel and channel),
the cost column of the trilemma table.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from difflab.likelihood.result import bin_width, check_levels
from difflab.utils.errors import DifflabError
from difflab.utils.seeding import Draws


def to_levels(x: Tensor, levels: int, check: bool = True) -> Tensor:
    """Level indices j = (x + 1) / Delta in 0..L-1 (long) of data on the L levels of [-1, 1]; one
    DifflabError naming the fix when x is off the levels (check=False skips the test and its host sync:
    the training step, whose data the job has checked)."""
    if check:
        check_levels(x, levels)
    return ((x.double() + 1) / bin_width(levels)).round().long().clamp(0, levels - 1)


def from_levels(j: Tensor, levels: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """x = -1 + j Delta: level indices 0..L-1 back to the data range [-1, 1]."""
    return (-1 + j.double() * bin_width(levels)).to(dtype)


def check_shape(data_shape, ranks: tuple[int, ...], family: str) -> tuple[int, ...]:
    """data_shape as a tuple of positive ints of one of the allowed ranks (1: vectors, 3: (C, H, W))."""
    shape = tuple(int(s) for s in data_shape)
    if len(shape) not in ranks or min(shape, default=0) < 1:
        want = " or ".join({1: "(D,)", 3: "(C, H, W)"}[r] for r in ranks)
        raise DifflabError(f"a {family} baseline needs data of shape {want} with positive sizes; got {shape}")
    return shape


def labels_of(cond: dict | None, num_classes: int | None, batch: int, device) -> Tensor | None:
    """The class index a conditional baseline embeds, from the trainer's cond dict ("class_labels",
    and "drop" -> the learned null class num_classes); None for an unconditional model."""
    if num_classes is None:
        return None
    if cond is None or "class_labels" not in cond:
        return torch.full((batch,), num_classes, dtype=torch.long, device=device)  # the null class
    labels = cond["class_labels"].long()
    if "drop" in cond:
        labels = torch.where(cond["drop"], torch.full_like(labels, num_classes), labels)
    return labels


def check_labels(labels: Tensor | None, num_classes: int | None, n: int) -> None:
    """Labels must match the model: none for an unconditional one, n indices in 0..num_classes-1."""
    if labels is None:
        return
    if num_classes is None:
        raise DifflabError("this baseline is unconditional: pass no labels, or train it with num_classes set")
    if labels.shape != (n,):
        raise DifflabError(f"labels must be {n} class indices in 0..{num_classes - 1}, one per image; got shape "
                           f"{tuple(labels.shape)}")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DifflabError(f"labels must be {n} class indices in 0..{num_classes - 1}; got values from "
                           f"{int(labels.min())} to {int(labels.max())}")


class Baseline(nn.Module):
    """A non-diffusion generative model: see the module docstring for the contract.

    Subclasses set family, data_shape, levels, has_likelihood, nfe_per_sample and num_classes in their
    constructor and implement draw (and log_likelihood where has_likelihood).
    """

    family: str
    data_shape: tuple[int, ...]
    levels: int | None
    has_likelihood: bool
    nfe_per_sample: int
    num_classes: int | None = None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def sample(self, n: int, *, generator: torch.Generator | None = None, seeds: Sequence[int] | None = None,
               device=None, labels: Tensor | None = None) -> Tensor:
        """n samples; their random numbers come from `generator` (one stream for the batch) or from `seeds`
        (one per sample: sample i is the same whatever batch it is drawn in; difflab.utils.seeding.Draws)."""
        if (generator is None) == (seeds is None):
            raise DifflabError("sample needs either a generator or one seed per sample")
        device = torch.device(device) if device is not None else self.device
        return self.draw(n, Draws(n, generator=generator, seeds=seeds, device=device), device, labels)

    def draw(self, n: int, draws: Draws, device: torch.device, labels: Tensor | None) -> Tensor:
        """n samples on `device` from the random numbers of `draws` (each subclass's sampler)."""
        raise NotImplementedError

    def log_likelihood(self, x: Tensor, *, generator: torch.Generator | None = None, k: int | None = None,
                       labels: Tensor | None = None) -> Tensor:
        raise NotImplementedError
